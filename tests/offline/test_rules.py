"""Retroactive rules end to end: backfill and diff over demo data, activation mid-stream, parity.

One worker processes demo data plus hand-made orders; then fraud v2 (false-positive tags make an
order negative) is activated while the worker runs; then more events arrive.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import uuid4

import pyarrow.parquet as pq
import pytest

from labelstore.events.admin import ensure_topics
from tests.fraud_example import generate
from labelstore.events.publisher import Publisher
from labelstore.catalog.activation import ActivationRecord, publish_activation
from labelstore.catalog.store import RuleCatalog
from labelstore.declarations import load_declarations
from labelstore.rules.files import read_rule_file
from labelstore.offline.asof import QueryError, as_of
from labelstore.offline.backfill import backfill, load_states
from labelstore.offline.diff import diff
from labelstore.offline.history import label_history
from tests.conftest import settings_for
from tests.offline.conftest import materialize, processed_everything
from tests.processors.test_core import classified, created, tagged
from tests.processors.worker_process import WorkerProcess, with_processor

V2 = Path(__file__).parents[2] / "examples" / "fraud" / "fraud.v2.sql"
T0 = datetime(2026, 4, 1, tzinfo=UTC)
SUFFIX = uuid4().hex[:6]
BEFORE, AFTER = f"fp-before-{SUFFIX}", f"fp-after-{SUFFIX}"


def false_positive_story(order_id: str, start: datetime) -> list:
    """The model says FRAUD, customer care tags the order false-positive, later a vip tag."""
    return [created(order_id, start), classified(order_id, start + timedelta(minutes=1), "FRAUD"),
            tagged(order_id, start + timedelta(hours=1), "false-positive")]


def wait_until_processed(settings, worker, timeout=90):
    deadline = time.monotonic() + timeout
    while not processed_everything(settings):
        worker.assert_alive()
        assert time.monotonic() < deadline, "the worker did not catch up"
        time.sleep(0.5)


@pytest.fixture(scope="module")
def world(kafka_cluster, tmp_path_factory):
    directory = tmp_path_factory.mktemp("rules")
    settings = with_processor(settings_for(kafka_cluster.bootstrap_servers), directory / "data")
    ensure_topics(settings)
    catalog = RuleCatalog(f"sqlite:///{directory / 'catalog.sqlite'}")
    for rule in settings.repository.rules:
        catalog.add(rule, "apply")
    v2, _ = catalog.add(read_rule_file(V2), "ana")
    worker = WorkerProcess(settings, directory / "worker.log").start()
    try:
        with Publisher(settings) as publisher:
            publisher.publish_many(list(generate(400, 0, seed=13)) + false_positive_story(BEFORE, T0))
            wait_until_processed(settings, worker)
            record = ActivationRecord(label="fraud", entity_type="order", rule=v2.rule, activated_by="ana")
            _, offset, appended_ms = publish_activation(settings, record)
            activated_at = datetime.fromtimestamp(appended_ms / 1000, UTC)
            catalog.record_activation("fraud", 2, "ana", offset=offset, effective_from=activated_at)
            time.sleep(0.05)
            publisher.publish_many([*false_positive_story(AFTER, T0), tagged(BEFORE, T0 + timedelta(hours=2), "vip")])
        wait_until_processed(settings, worker)
        warehouse = materialize(settings, directory / "warehouse")
    finally:
        worker.stop()
    return warehouse, v2.rule, activated_at


def online(warehouse, entity_id):
    connection = warehouse.connect()
    return connection.execute("SELECT rule_version, previous_value, value FROM labels WHERE label = 'fraud' "
                              "AND entity_id = ? ORDER BY recorded_at, cause_offset", [entity_id]).fetchall()


def test_activation_changes_later_labels_and_not_earlier_ones(world):
    warehouse, _, activated_at = world
    # Before the activation v1 ran: FRAUD -> positive, the false-positive tag changed nothing.
    # The first event after it is judged by v2: negative.
    assert online(warehouse, BEFORE) == [(1, None, "positive"), (2, "positive", "negative")]
    assert online(warehouse, AFTER) == [(2, None, "positive"), (2, "positive", "negative")]
    connection = warehouse.connect()
    earlier = connection.execute("SELECT DISTINCT rule_version FROM labels WHERE label = 'fraud' AND recorded_at < ?",
                                 [activated_at]).fetchall()
    later = connection.execute("SELECT DISTINCT rule_version FROM labels WHERE label = 'fraud' AND recorded_at >= ?",
                               [activated_at]).fetchall()
    assert earlier == [(1,)] and later == [(2,)]
    # What was known just before the activation stays as it was.
    assert as_of(warehouse, "fraud", entity_ids=[BEFORE], known_at=activated_at - timedelta(milliseconds=1)
                 ).column("value").to_pylist() == ["positive"]


def test_backfilled_history_equals_online_versions_of_the_activated_version(world):
    warehouse, v2, _ = world
    result = backfill(warehouse, v2)
    assert result.state_rows > 1_000 and result.versions > 0
    connection = warehouse.connect()
    connection.register("backfilled", pq.read_table(result.path))
    # AFTER's whole life came after the activation: online v2 versions == backfilled v2 history.
    columns = "version_id, rule_version, value, previous_value, event_time, recorded_at, event_id, cause_offset"
    order = "ORDER BY recorded_at, cause_offset"
    backfilled = connection.execute(f"SELECT {columns} FROM backfilled WHERE entity_id = ? {order}", [AFTER]).fetchall()
    emitted = connection.execute(f"SELECT {columns} FROM labels WHERE label = 'fraud' AND entity_id = ? {order}",
                                 [AFTER]).fetchall()
    assert len(backfilled) == 2 and backfilled == emitted
    # As-of queries can be asked for the backfilled version.
    assert as_of(warehouse, "fraud", entity_ids=[BEFORE], rule_versions={"fraud": 2}, rules=[v2]
                 ).column("value").to_pylist() == ["negative"]


def test_diff_of_v1_and_v2_over_the_demo_data(world, tmp_path):
    warehouse, v2, _ = world
    from labelstore.rules.model import load_rules

    v1 = next(r for r in load_rules() if r.name == "fraud")
    report = diff(warehouse, v1, v2, sample=3)
    # Independent expectation from the states: classified, tagged false-positive at the end, and
    # positive under v1 (FRAUD, or NOT_FRAUD with a false-negative tag) -> negative under v2.
    states = load_states(warehouse, load_declarations()["order"]).to_pylist()
    final = {}
    for state in states:
        final[state["entity_id"]] = state
    flipped = {e for e, s in final.items() if s["classification"] and "false-positive" in s["tags"]
               and (s["classification"] == "FRAUD" or "false-negative" in s["tags"])}
    assert len(flipped) >= 5  # the demo has false positives, plus the two hand-made ones
    assert report.confusion.get(("positive", "negative"), 0) == len(flipped)
    assert report.confusion.get(("negative", "positive"), 0) == 0
    assert report.differing_entities >= len(flipped)
    assert report.entities == len(final)
    assert len(report.samples) == 3 and all(s.history_a != s.history_b for s in report.samples)
    assert [d.entity_id for d in report.differing[:3]] == [s.entity_id for s in report.samples]

    # On the valid axis: the states by business time, divergences at the events' times.
    valid = diff(warehouse, v1, v2, axis="valid", sample=1)
    assert valid.entities == report.entities and valid.clock == "event_time"
    event_times = {t for t, in warehouse.connect().execute("SELECT DISTINCT event_time FROM events").fetchall()}
    assert valid.first_divergence in event_times
    with pytest.raises(QueryError, match="unknown time axis"):
        diff(warehouse, v1, v2, axis="business")
    from labelstore.offline.diff import plot

    assert plot(report, tmp_path / "diff.png").stat().st_size > 1000


def test_offline_history_with_v2_evaluates_like_the_processor(world):
    """label_history is the change detection used by backfills: same ids as the processor's."""
    warehouse, v2, _ = world
    states = load_states(warehouse, load_declarations()["order"])
    history = label_history(states, "order", [v2], load_declarations()["order"])
    mine = [r for r in history.to_pylist() if r["entity_id"] == AFTER]
    assert [(r["previous_value"], r["value"]) for r in mine] == [(None, "positive"), ("positive", "negative")]
