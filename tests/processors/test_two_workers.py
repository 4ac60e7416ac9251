"""Two workers on one machine share the partitions, and either answers for any entity."""

from __future__ import annotations

from datetime import UTC, datetime

from confluent_kafka.admin import AdminClient

from labelstore.events.admin import ensure_topics
from labelstore.events.publisher import Publisher
from labelstore.processors.client import LatestLabelsClient
from tests.conftest import settings_for
from tests.processors.test_core import classified, created
from tests.processors.worker_process import WorkerProcess, free_port, label_versions, wait_for, with_processor

T1 = datetime(2026, 2, 1, tzinfo=UTC)


def group_assignments(settings) -> list[set[int]]:
    admin = AdminClient({"bootstrap.servers": settings.kafka.bootstrap_servers})
    group_id = settings.topics.prefix + settings.processor.app_id
    description = admin.describe_consumer_groups([group_id])[group_id].result(30)
    topic = settings.topics.events_topic("order")
    return [{tp.partition for tp in member.assignment.topic_partitions if tp.topic == topic}
            for member in description.members]


def test_two_workers_share_partitions_and_route_requests(kafka_cluster, tmp_path):
    settings = with_processor(settings_for(kafka_cluster.bootstrap_servers), tmp_path / "data")
    ensure_topics(settings)
    second_settings = settings.model_copy(update={"processor": settings.processor.model_copy(update={"web_port": free_port()})})
    workers = [WorkerProcess(settings, tmp_path / "a.log").start(), WorkerProcess(second_settings, tmp_path / "b.log").start()]
    try:
        orders = [f"order-{i:03d}" for i in range(60)]
        with Publisher(settings) as publisher:
            publisher.publish_many([e for order in orders for e in (created(order, T1), classified(order, T1, "FRAUD"))])
        wait_for(lambda: len(label_versions(settings)) >= len(orders), timeout=120, worker=workers[0])
        assignments = wait_for(lambda: (a := group_assignments(settings)) and len(a) == 2 and all(a) and a,
                               timeout=60, worker=workers[1])
        assert assignments[0] | assignments[1] == set(range(settings.kafka.partitions))
        assert not assignments[0] & assignments[1]
        for worker in workers:
            client = LatestLabelsClient(worker.url)
            # After the rebalance the new owner answers once it has recovered the state from the
            # changelog; a state that was lost would never appear.
            wait_for(lambda: all(client.value("order", order, "fraud") == "positive" for order in orders),
                     timeout=30, worker=worker)
    finally:
        for worker in workers:
            worker.stop()
