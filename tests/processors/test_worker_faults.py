"""Failures lose nothing: a worker killed with SIGKILL mid-stream, and a broker lost mid-stream.

The reference is an uninterrupted run of the same processing logic over the very same log (same
partitions, offsets and broker timestamps), so the label versions must match field for field.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from uuid import UUID

import pytest

from labelstore.events.admin import ensure_topics
from tests.fraud_example import generate
from labelstore.events.publisher import Publisher
from labelstore.events.reader import count_records
from labelstore.labels import LabelVersion
from labelstore.localkafka import LocalKafkaCluster
from labelstore.settings import LocalKafkaSettings, Settings
from labelstore.processors.refold import uninterrupted_versions
from tests.conftest import settings_for
from tests.processors.worker_process import WorkerProcess, label_versions, wait_for, with_processor

pytestmark = pytest.mark.fault


def publish(settings: Settings, events) -> None:
    with Publisher(settings) as publisher:
        while chunk := list(itertools.islice(events, 10_000)):
            publisher.publish_many(chunk)


def wait_for_all(worker: WorkerProcess, expected: dict[UUID, LabelVersion], timeout: float) -> list[LabelVersion]:
    topic = worker.settings.topics.label_versions_topic
    wait_for(lambda: count_records(worker.settings, topic) >= len(expected), timeout=timeout, worker=worker, interval=2)

    def complete():
        emitted = label_versions(worker.settings)
        return emitted if {v.version_id for v in emitted} >= set(expected) else None

    try:
        return wait_for(complete, timeout=60, worker=worker, interval=2)
    except AssertionError:
        return label_versions(worker.settings)  # assert_same_versions then says what is missing


def _where(versions) -> str:
    by_partition = defaultdict(list)
    for version in versions:
        by_partition[version.caused_by.partition].append(version.caused_by.offset)
    return ", ".join(f"p{p}: {len(o)} at offsets {min(o)}-{max(o)}" for p, o in sorted(by_partition.items()))


def assert_same_versions(emitted: list[LabelVersion], expected: dict[UUID, LabelVersion]) -> int:
    """Deduplicated by version_id the emitted versions equal the expected ones; returns duplicates."""
    unique = {v.version_id: v for v in emitted}
    missing = [expected[key] for key in set(expected) - set(unique)]
    extra = [unique[key] for key in set(unique) - set(expected)]
    assert not missing and not extra, (f"{len(missing)} versions missing ({_where(missing)}), "
                                       f"{len(extra)} not expected ({_where(extra)})")
    assert all(unique[key] == expected[key] for key in expected)
    return len(emitted) - len(unique)


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_worker_killed_mid_stream_recovers_and_loses_nothing(kafka_cluster, tmp_path, guarantee):
    settings = with_processor(settings_for(kafka_cluster.bootstrap_servers), tmp_path / "data",
                              processing_guarantee=guarantee)
    ensure_topics(settings)
    publish(settings, itertools.islice(generate(45_000, 5_000, seed=21), 100_000))
    expected = uninterrupted_versions(settings)

    first = WorkerProcess(settings, tmp_path / "first.log").start()
    versions_topic = settings.topics.label_versions_topic
    try:
        wait_for(lambda: count_records(settings, versions_topic) >= len(expected) // 3, timeout=240, worker=first,
                 interval=0.2)
    finally:
        first.kill()
    emitted_before_kill = count_records(settings, versions_topic)

    second = WorkerProcess(settings, tmp_path / "second.log").start()
    try:
        emitted = wait_for_all(second, expected, timeout=300)
    finally:
        second.stop()
    duplicates = assert_same_versions(emitted, expected)
    print(f"\n{guarantee}: {len(expected)} label versions expected, {emitted_before_kill} written before "
          f"SIGKILL, {len(emitted)} read back (read_committed), duplicates by version_id: {duplicates}")
    if guarantee == "exactly_once":  # at-least-once may repeat the versions of the batches it redoes
        assert duplicates == 0


def rules_leader_index(cluster, settings) -> int:
    from confluent_kafka.admin import AdminClient

    topic = settings.topics.rules_topic
    metadata = AdminClient({"bootstrap.servers": cluster.bootstrap_servers}).list_topics(topic, timeout=30)
    leader = metadata.topics[topic].partitions[0].leader
    return next(index for index, node in enumerate(cluster.nodes) if node.node_id == leader)


def test_losing_a_broker_mid_stream_loses_no_event_and_no_label_version(tmp_path):
    with LocalKafkaCluster(LocalKafkaSettings(), nodes=3, data_dir=tmp_path / "kafka") as cluster:
        settings = settings_for(cluster.bootstrap_servers, replication_factor=3, min_insync_replicas=2)
        settings = with_processor(settings, tmp_path / "data")
        ensure_topics(settings)
        events = list(itertools.islice(generate(12_000, 2_000, seed=5), 30_000))
        publish(settings, iter(events[:15_000]))
        worker = WorkerProcess(settings, tmp_path / "worker.log").start()
        try:
            topic = settings.topics.label_versions_topic
            wait_for(lambda: count_records(settings, topic) > 1_000, timeout=180, worker=worker, interval=0.2)
            # The broker leading the rules topic: workers then also lose the rules partition's leader.
            cluster.stop_node(rules_leader_index(cluster, settings), kill=True)
            publish(settings, iter(events[15_000:]))  # while the broker is down
            held = sum(count_records(settings, settings.topics.events_topic(e)) for e in settings.repository.entity_types)
            assert held == len(events)
            expected = uninterrupted_versions(settings)
            emitted = wait_for_all(worker, expected, timeout=300)
        finally:
            worker.stop()
        duplicates = assert_same_versions(emitted, expected)
        print(f"\nbroker lost mid-stream: {len(events)} events all in the log, {len(expected)} label versions "
              f"all emitted, {duplicates} duplicates by version_id")
