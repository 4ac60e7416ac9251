"""How far the processor and the materializer are behind, who owns what, and when each last moved.

The processor's position is its consumer group's committed offsets; its members (from the
brokers) name their web address in their client id, and each answers ``/status`` with its
health, readiness and last progress. The materializer has no consumer group: its position is the
warehouse's last commit, and its last progress that commit's time.
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions
from confluent_kafka.admin import AdminClient

from labelstore.connection import bootstrap_servers
from labelstore.errors import LabelstoreError
from labelstore.events.admin import end_offsets
from labelstore.settings import Settings
from labelstore.warehouse import Warehouse

CLIENT_ID_PREFIX = "labelstore-processor@"  # see processors.transport.App
TIMEOUT_S = 10.0


@dataclass
class PartitionLag:
    topic: str
    partition: int
    end: int
    position: int | None  # the next offset to process; None before the first commit
    owner: str | None = None

    @property
    def lag(self) -> int:
        return self.end - (self.position or 0)


@dataclass
class Member:
    client_id: str
    host: str
    partitions: list[str]
    status: dict[str, Any] | None = None  # the worker's /status answer
    error: str | None = None  # why there is no answer


@dataclass
class Status:
    name: str
    partitions: list[PartitionLag]
    members: list[Member] = field(default_factory=list)
    state: str | None = None  # the consumer group's state
    last_progress_at: float | None = None  # epoch seconds

    @property
    def lag(self) -> int:
        return sum(p.lag for p in self.partitions)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "state": self.state, "lag": self.lag, "last_progress_at": self.last_progress_at,
                "partitions": [{**vars(p), "lag": p.lag} for p in self.partitions],
                "members": [vars(m) for m in self.members]}


def processor_status(settings: Settings, *, ask_workers: bool = True) -> Status:
    admin = AdminClient({"bootstrap.servers": bootstrap_servers(settings)})
    group = settings.topics.prefix + settings.processor.app_id
    topics = [settings.topics.events_topic(e) for e in settings.repository.entity_types]
    ends = _ends(settings, admin, topics)
    committed = _committed(admin, group)
    described = admin.describe_consumer_groups([group], request_timeout=TIMEOUT_S)[group].result()
    members, owners = [], {}
    for member in described.members:
        assigned = sorted((tp.topic, tp.partition) for tp in (member.assignment.topic_partitions or [])
                          if tp.topic in ends)
        for tp in assigned:
            owners[tp] = member.client_id
        members.append(Member(member.client_id, member.host, [f"{t}/{p}" for t, p in assigned]))
    if ask_workers:
        for member in members:
            _ask(member)
    partitions = [PartitionLag(topic, partition, end, committed.get((topic, partition)), owners.get((topic, partition)))
                  for topic in topics for partition, end in sorted(ends[topic].items())]
    progress = [m.status["health"]["last_progress_at"] for m in members if m.status]
    return Status("processor", partitions, members, str(described.state.name).lower(),
                  max(progress) if progress else None)


def materializer_status(settings: Settings) -> Status:
    admin = AdminClient({"bootstrap.servers": bootstrap_servers(settings)})
    topics = [*(settings.topics.events_topic(e) for e in settings.repository.entity_types),
              settings.topics.label_versions_topic]
    ends = _ends(settings, admin, topics)
    commit = Warehouse.of(settings).last_commit()
    archived = commit.offsets if commit else {}
    partitions = [PartitionLag(topic, partition, end, archived.get(topic, {}).get(partition))
                  for topic in topics for partition, end in sorted(ends[topic].items())]
    return Status("materializer", partitions,
                  last_progress_at=commit.committed_at_ms / 1000 if commit and commit.committed_at_ms else None)


def _ends(settings: Settings, admin: AdminClient, topics: list[str]) -> dict[str, dict[int, int]]:
    metadata = admin.list_topics(timeout=TIMEOUT_S).topics
    missing = [t for t in topics if t not in metadata]
    if missing:
        raise LabelstoreError(f"topics {', '.join(missing)} do not exist: run `labelstore apply`")
    return end_offsets(settings, {t: sorted(metadata[t].partitions) for t in topics}, timeout=TIMEOUT_S, admin=admin)


def _committed(admin: AdminClient, group: str) -> dict[tuple[str, int], int]:
    request = [ConsumerGroupTopicPartitions(group)]
    answer = admin.list_consumer_group_offsets(request, request_timeout=TIMEOUT_S)[group].result()
    return {(tp.topic, tp.partition): tp.offset for tp in answer.topic_partitions if tp.offset >= 0}


def _ask(member: Member) -> None:
    if not member.client_id.startswith(CLIENT_ID_PREFIX):
        member.error = "not a labelstore worker (its client id names no web address)"
        return
    address = member.client_id.removeprefix(CLIENT_ID_PREFIX)
    host, _, port = address.rpartition(":")
    if host in ("0.0.0.0", "::", ""):  # listening everywhere: reach it where the brokers see it
        host = member.host.lstrip("/")
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/status", timeout=5) as answer:
            member.status = json.loads(answer.read())
    except Exception as exc:  # noqa: BLE001  (a worker that does not answer is itself a finding)
        member.error = f"http://{host}:{port}/status did not answer: {exc}"
