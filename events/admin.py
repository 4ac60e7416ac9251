"""The topics of labelstore, created with the configuration the rest of the system relies on.

Event topics stamp records with the broker's clock (``LogAppendTime``): that stamp is when the
system *knew* a fact, the ``known_at`` axis of as-of queries. They keep everything forever, since
the event log is the source of truth. ``labels.latest`` is compacted: one record per entity+label.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from labelstore.events.exceptions import TopicMismatchError
from labelstore.connection import bootstrap_servers
from labelstore.settings import Settings

FOREVER = {"retention.ms": "-1", "retention.bytes": "-1"}
# The settings as-of semantics depend on; a topic that differs is refused, not silently used.
REQUIRED_CONFIG_KEYS = ("message.timestamp.type", "cleanup.policy")


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    config: Mapping[str, str] = field(default_factory=dict)


def topic_specs(settings: Settings) -> list[TopicSpec]:
    kafka, topics = settings.kafka, settings.topics
    durable = {"min.insync.replicas": str(kafka.min_insync_replicas)}
    event_config = {**FOREVER, **durable, "message.timestamp.type": "LogAppendTime", "cleanup.policy": "delete"}

    def spec(name: str, config: Mapping[str, str]) -> TopicSpec:
        return TopicSpec(name, kafka.partitions, kafka.replication_factor, config)

    return [
        *(spec(topics.events_topic(entity), event_config) for entity in settings.repository.entity_types),
        spec(topics.label_versions_topic, {**FOREVER, **durable, "cleanup.policy": "delete"}),
        spec(topics.label_latest_topic, {**durable, "cleanup.policy": "compact"}),
        spec(topics.dead_letter_topic, event_config),
        # Rule activations: every processor reads all of it, in one order; one key per activation,
        # so compaction keeps the whole history. The log-append time is when an activation applies.
        TopicSpec(topics.rules_topic, 1, kafka.replication_factor,
                  {**durable, "cleanup.policy": "compact", "message.timestamp.type": "LogAppendTime"}),
    ]


def ensure_topics(settings: Settings, specs: list[TopicSpec] | None = None, *, timeout: float = 30.0) -> list[str]:
    """Create missing topics; check existing ones. Returns the names it created."""
    admin = AdminClient({"bootstrap.servers": bootstrap_servers(settings)})
    specs = topic_specs(settings) if specs is None else specs
    existing = admin.list_topics(timeout=timeout).topics
    missing = [s for s in specs if s.name not in existing]
    if missing:
        _create(admin, missing, timeout)
        _wait_for_leaders(admin, [s.name for s in missing], timeout)
    _check(admin, [s for s in specs if s.name in existing], existing, timeout)
    return [s.name for s in missing]


def missing_topics(settings: Settings, *, timeout: float = 10.0) -> tuple[list[TopicSpec], list[str]]:
    """The topics ``ensure_topics`` would create, and the names of those that exist."""
    admin = AdminClient({"bootstrap.servers": bootstrap_servers(settings)})
    try:
        existing = admin.list_topics(timeout=timeout).topics
    except KafkaException as exc:
        raise TopicMismatchError(f"the cluster did not answer: {exc.args[0].str()}") from exc
    specs = topic_specs(settings)
    return [s for s in specs if s.name not in existing], [s.name for s in specs if s.name in existing]


def _create(admin: AdminClient, specs: list[TopicSpec], timeout: float) -> None:
    new = [NewTopic(s.name, s.partitions, s.replication_factor, config=dict(s.config)) for s in specs]
    for name, future in admin.create_topics(new, request_timeout=timeout).items():
        try:
            future.result()
        except KafkaException as exc:
            if exc.args[0].code() != exc.args[0].TOPIC_ALREADY_EXISTS:
                raise TopicMismatchError(f"could not create topic {name}: {exc.args[0].str()}") from exc


def _wait_for_leaders(admin: AdminClient, names: list[str], timeout: float) -> None:
    """A created topic is usable once every partition has a leader; creation returns before."""
    deadline = time.monotonic() + timeout
    while True:
        topics = admin.list_topics(timeout=timeout).topics
        if all(n in topics and topics[n].partitions and all(p.leader >= 0 for p in topics[n].partitions.values())
               for n in names):
            return
        if time.monotonic() > deadline:
            raise TopicMismatchError(f"topics {names} have partitions without a leader after {timeout:.0f} s")
        time.sleep(0.1)


def _check(admin: AdminClient, specs: list[TopicSpec], existing: Mapping, timeout: float) -> None:
    if not specs:
        return
    resources = [ConfigResource(ConfigResource.Type.TOPIC, s.name) for s in specs]
    configs = {r.name: f.result(timeout) for r, f in admin.describe_configs(resources).items()}
    for spec in specs:
        partitions = len(existing[spec.name].partitions)
        if partitions != spec.partitions:
            raise TopicMismatchError(
                f"topic {spec.name} has {partitions} partitions, labelstore expects {spec.partitions}: "
                "entity keys would map to other partitions than in co-partitioned topics"
            )
        for key in REQUIRED_CONFIG_KEYS:
            wanted, actual = spec.config.get(key), configs[spec.name][key].value
            if wanted is not None and actual != wanted:
                raise TopicMismatchError(
                    f"topic {spec.name} has {key}={actual}, labelstore needs {key}={wanted}: "
                    f"change it with kafka-configs or use another topic prefix"
                )


LEADER_MOVED = {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
                KafkaError.UNKNOWN_TOPIC_OR_PART}  # also just after a topic was created


def end_offsets(settings: Settings, partitions: Mapping[str, list[int]], *, timeout: float = 30.0,
                admin: AdminClient | None = None) -> dict[str, dict[int, int]]:
    """The current end offset of each partition, in one request per broker."""
    from confluent_kafka import IsolationLevel, TopicPartition
    from confluent_kafka.admin import OffsetSpec

    admin = admin or AdminClient({"bootstrap.servers": bootstrap_servers(settings)})
    request = {TopicPartition(t, p): OffsetSpec.latest() for t, ps in partitions.items() for p in ps}
    if not request:
        return {}
    ends: dict[str, dict[int, int]] = {topic: {} for topic in partitions}
    deadline = time.monotonic() + timeout
    while request:
        futures = admin.list_offsets(request, isolation_level=IsolationLevel.READ_COMMITTED, request_timeout=timeout)
        for tp, future in futures.items():
            try:
                ends[tp.topic][tp.partition] = future.result().offset
            except KafkaException as exc:
                # A leader that moved, or a topic just created: the client learns the new leader and asks again.
                error = exc.args[0]
                if not (error.retriable() or error.code() in LEADER_MOVED) or time.monotonic() > deadline:
                    raise
            else:
                del request[tp]
        if request:
            time.sleep(0.2)
    return ends
