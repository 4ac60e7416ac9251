"""A real worker's /metrics: its counters move with the events it processed, and nothing else."""

from __future__ import annotations

import json
import re
import urllib.request
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import pytest
from confluent_kafka import Producer
from prometheus_client.parser import text_string_to_metric_families

from labelstore.events.admin import ensure_topics
from labelstore.events.publisher import Publisher, producer_config
from tests.conftest import settings_for
from tests.processors.test_core import classified, created
from tests.processors.worker_process import WorkerProcess, label_versions, wait_for, with_processor

DASHBOARD = Path(__file__).resolve().parents[2] / "monitoring" / "grafana" / "dashboards" / "labelstore.json"
T1 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
ORDERS = 40


@pytest.fixture(scope="module")
def worker(kafka_cluster, tmp_path_factory):
    directory = tmp_path_factory.mktemp("metrics")
    settings = with_processor(settings_for(kafka_cluster.bootstrap_servers), directory / "data")
    ensure_topics(settings)
    process = WorkerProcess(settings, directory / "worker.log").start()
    wait_for(lambda: _ready(process), timeout=60, worker=process)
    yield process
    process.stop()


def _ready(worker) -> bool:
    try:
        with urllib.request.urlopen(f"{worker.url}/readyz", timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def scrape(worker) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the worker's /metrics, by name and labels."""
    with urllib.request.urlopen(f"{worker.url}/metrics", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def total(samples, name: str, **labels: str) -> float:
    return sum(value for (sample, sample_labels), value in samples.items()
               if sample == name and labels.items() <= dict(sample_labels).items())


def test_counters_move_with_the_events_processed(worker):
    settings = worker.settings
    topic = settings.topics.events_topic("order")
    before = scrape(worker)
    orders = [f"order-{uuid4().hex[:8]}" for _ in range(ORDERS)]
    publisher = Publisher(settings)
    publisher.publish_many([event for order in orders for event in (created(order, T1), classified(order, T1, "FRAUD"))])
    publisher.close()
    raw = Producer(producer_config(settings))
    for key, value in ((b"bad-1", b"not avro at all"), (b"bad-2", b"\xc3\x01" + bytes(8))):
        raw.produce(topic, key=key, value=value)
    assert raw.flush(30) == 0
    events = 2 * ORDERS + 2

    after = wait_for(lambda: (s := scrape(worker)) and total(s, "labelstore_events_consumed_total") - total(
        before, "labelstore_events_consumed_total") >= events and s, timeout=60, worker=worker)

    def moved(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert moved("labelstore_events_consumed_total", topic=topic) == events
    assert moved("labelstore_batch_events_sum", entity_type="order") == events
    assert moved("labelstore_batch_duration_seconds_count", entity_type="order") == moved(
        "labelstore_batch_events_count", entity_type="order") >= 1
    assert moved("labelstore_dead_letters_total", entity_type="order", error_type="CorruptMessageError") == 1
    assert moved("labelstore_dead_letters_total", entity_type="order", error_type="UnknownSchemaError") == 1

    # The versions counted are the versions on the topic, label by label, value by value.
    versions = [v for v in label_versions(settings) if v.entity_id in set(orders)]
    expected = Counter((v.label, str(v.value).lower() if isinstance(v.value, bool) else str(v.value), str(v.rule_version))
                       for v in versions)
    assert expected[("fraud", "positive", "1")] == ORDERS
    for (label, value, rule_version), count in expected.items():
        assert moved("labelstore_label_versions_total", label=label, value=value, rule_version=rule_version) == count
    assert moved("labelstore_label_versions_total") == len(versions)
    assert moved("labelstore_label_latency_seconds_count", entity_type="order") == len(versions)
    assert 0 < moved("labelstore_label_latency_seconds_sum", entity_type="order") < 60 * len(versions)


def test_lag_rules_and_store_are_read_when_scraped(worker):
    settings = worker.settings
    samples = scrape(worker)
    assert total(samples, "labelstore_rule_version_in_force", entity_type="order", label="fraud") == 1
    assert total(samples, "labelstore_state_store_entities", entity_type="order") >= ORDERS
    # Lag: one gauge per owned event partition, and none left once the worker caught up.
    topic = settings.topics.events_topic("order")
    caught_up = wait_for(lambda: (s := scrape(worker)) and _lag_of(s, topic) and
                         all(v == 0 for v in _lag_of(s, topic).values()) and s, timeout=30, worker=worker)
    assert set(_lag_of(caught_up, topic)) == {str(p) for p in range(settings.kafka.partitions)}
    assert total(caught_up, "process_resident_memory_bytes") > 0


def _lag_of(samples, topic: str) -> dict[str, float]:
    return {dict(labels)["partition"]: value for (name, labels), value in samples.items()
            if name == "labelstore_consumer_lag_events" and dict(labels)["topic"] == topic}


def test_the_dashboard_reads_only_metrics_that_are_exposed(worker):
    """Every series the provisioned Grafana dashboard asks for is one a worker or the materializer serves."""
    from labelstore.materializers.metrics import MaterializerMetrics

    dashboard = json.loads(DASHBOARD.read_text())
    wanted = {name for panel in dashboard["panels"] for target in panel.get("targets", ())
              for name in re.findall(r"\blabelstore_[a-z_]+", target["expr"])}
    materializer = MaterializerMetrics()
    materializer.committed({"events": 1}, 0.1, 1_000)
    materializer.behind({("t.events", 0): 0})
    served = {name for name, _ in scrape(worker)} | {
        sample.name for family in materializer.registry.collect() for sample in family.samples}
    assert len(wanted) >= 10
    assert wanted <= served, f"not served: {sorted(wanted - served)}"
