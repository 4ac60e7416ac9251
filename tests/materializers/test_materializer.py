"""The materializer on a real broker: every record archived once, across a SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from uuid import uuid4

import pyarrow.parquet as pq
import pytest
from confluent_kafka import Producer

from tests.fraud_example import generate, example_serializer
from labelstore.events.publisher import producer_config
from labelstore.events.reader import read_raw
from labelstore.labels import Cause, LabelVersion
from labelstore.localkafka.cluster import free_port
from labelstore.settings import WarehouseSettings
from labelstore.warehouse import Warehouse
from labelstore.materializers.materializer import Materializer

pytestmark = pytest.mark.timeout(300)


def produce(settings, topic, records) -> None:
    producer = Producer(producer_config(settings))
    for key, value in records:
        while True:
            try:
                producer.produce(topic, key=key, value=value)
                break
            except BufferError:
                producer.poll(0.1)
    assert producer.flush(60) == 0


def demo_records(orders: int, content: int) -> dict[str, list[tuple[bytes, bytes]]]:
    serializer = example_serializer()
    by_type: dict[str, list] = {"order": [], "content": []}
    for event in generate(orders, content, seed=3):
        by_type[event.entity_type].append((event.entity_id.encode(), serializer.encode(event)))
    return by_type


def a_version(entity_id: str, value: str, offset: int) -> LabelVersion:
    return LabelVersion(
        version_id=uuid4(), entity_type="order", entity_id=entity_id, label="fraud", rule_version=1, value=value,
        previous_value=None, event_time=1_000, recorded_at=2_000,
        caused_by=Cause(event_id=uuid4(), topic="orders.events", partition=0, offset=offset))


def with_warehouse(settings, path, **warehouse):
    return settings.model_copy(update={"warehouse": WarehouseSettings(path=path, metrics_port=free_port(), **warehouse)})


def test_archives_events_and_versions_once_and_skips_bad_records(settings, tmp_path):
    records = demo_records(40, 10)
    produce(settings, settings.topics.events_topic("order"), records["order"][:100])
    produce(settings, settings.topics.events_topic("order"), [(b"order-x", b"not avro"), (None, records["order"][0][1])])
    produce(settings, settings.topics.events_topic("order"), records["order"][100:])
    produce(settings, settings.topics.events_topic("content"), records["content"])
    twice = a_version("order-1", "positive", 5)
    versions = [twice, a_version("order-2", "negative", 6), twice]  # a re-emitted version after a crash
    produce(settings, settings.topics.label_versions_topic, [(v.entity_id.encode(), v.to_json()) for v in versions])

    settings = with_warehouse(settings, tmp_path / "warehouse")
    materializer = Materializer(settings)
    stats = materializer.run(until_caught_up=True)
    assert stats.skipped == 2
    metric = materializer.metrics.registry.get_sample_value
    assert metric("labelstore_materializer_records_archived_total", {"dataset": "events"}) == sum(map(len, records.values()))
    assert metric("labelstore_materializer_records_archived_total", {"dataset": "label_versions"}) == 3
    assert metric("labelstore_materializer_records_skipped_total") == 2
    assert metric("labelstore_materializer_commits_total") == stats.commits >= 1
    assert metric("labelstore_materializer_lag_records", {"topic": settings.topics.events_topic("order"),
                                                          "partition": "0"}) == 0

    connection = Warehouse(settings.warehouse.path).connect()
    counts = dict(connection.execute("SELECT entity_type, count(*) FROM events GROUP BY ALL").fetchall())
    assert counts == {"order": len(records["order"]), "content": len(records["content"])}
    assert connection.execute("SELECT count(*) FROM label_versions").fetchone() == (3,)
    assert sorted(connection.execute("SELECT entity_id, value FROM labels").fetchall()) == [
        ("order-1", "positive"), ("order-2", "negative")]
    # The archived bytes are the published ones.
    archived = dict(connection.execute("SELECT event_id, avro FROM events").fetchall())
    published = {str(example_serializer().decode(v).event_id): v for v, in [(v,) for _, v in records["content"]]}
    assert all(archived[event_id] == value for event_id, value in published.items())

    # Nothing new: a second run archives nothing and duplicates nothing.
    assert Materializer(settings).run(until_caught_up=True).records == 0
    assert connection.execute("SELECT count(*) FROM events").fetchone() == (len(records["order"]) + len(records["content"]),)


def test_the_duckdb_file_has_the_views(settings, tmp_path):
    produce(settings, settings.topics.events_topic("content"), demo_records(0, 5)["content"])
    settings = with_warehouse(settings, tmp_path / "warehouse")
    Materializer(settings).run(until_caught_up=True)
    import duckdb

    with duckdb.connect(str(Warehouse(settings.warehouse.path).duckdb_path), read_only=True) as connection:
        assert connection.execute("SELECT count(*) FROM events").fetchone()[0] > 0
        assert connection.execute("SELECT count(*) FROM labels").fetchone() == (0,)


@pytest.mark.fault
def test_sigkill_mid_stream_loses_and_duplicates_nothing(settings, tmp_path):
    """200k records, the materializer killed with SIGKILL after a few commits, then resumed."""
    serializer, topic = example_serializer(), settings.topics.events_topic("order")
    events = [e for e in generate(82_000, 0, seed=11)]
    produce(settings, topic, [(e.entity_id.encode(), serializer.encode(e)) for e in events])
    expected = {(p, o) for _, _, p, o, _, _ in read_raw(settings, topic)}
    assert len(expected) == len(events) >= 200_000

    settings = with_warehouse(settings, tmp_path / "warehouse", flush_records=7_000, flush_interval_s=0.2)
    warehouse = Warehouse(settings.warehouse.path)
    env = {**os.environ, **settings.to_environment()}
    command = [sys.executable, "-m", "labelstore", "materialize", "--log-level", "warning"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while (warehouse.last_commit() is None or warehouse.last_commit().sequence < 4) and time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read().decode()
        time.sleep(0.05)
    scraped = _scrape(f"http://127.0.0.1:{settings.warehouse.metrics_port}/metrics")
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    committed = warehouse.last_commit()
    assert 0 < sum(committed.offsets[topic].values()) < len(events), "the kill must land mid-stream"

    # What a reader sees right after the kill: whole files only, exactly the committed records.
    for path in warehouse.data_files("events"):
        pq.read_metadata(path)
    visible = warehouse.connect().execute("SELECT count(*) FROM events").fetchone()[0]
    assert visible == sum(committed.offsets[topic].values())

    # The running `labelstore materialize` served its metrics: commits made, records archived.
    assert scraped["labelstore_materializer_commits_total"] >= 1
    assert 0 < scraped["labelstore_materializer_records_archived_total"] <= len(events)

    subprocess.run([*command, "--until-caught-up"], env=env, check=True, capture_output=True, timeout=240)
    rows = warehouse.connect().execute("SELECT partition, \"offset\" FROM events").fetchall()
    assert len(rows) == len(set(rows)), "a record was archived twice"
    assert set(rows) == expected
    # Files the killed commit wrote but never named are gone; every file left is in the table.
    assert set(warehouse.dataset_dir("events").glob("data/**/*.parquet")) == set(warehouse.data_files("events"))


def _scrape(url: str) -> dict[str, float]:
    """Each metric's samples summed over their labels."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            totals[sample.name] = totals.get(sample.name, 0) + sample.value
    return totals
