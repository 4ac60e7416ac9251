"""As-of queries on both time axes, against hand-computed expectations.

Events go through a real processor worker and the materializer. Business times (event_time) are
chosen here; known times (recorded_at) are the broker's log-append stamps, read back from the
publish reports, so every expectation below is stated relative to them.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

from labelstore.events.admin import ensure_topics
from tests.fraud_example import generate
from tests.fraud_example import model
from labelstore.events.publisher import Publisher
from labelstore.declarations import load_declarations
from labelstore.rules.model import load_rules
from labelstore.offline.asof import QueryError, as_of
from labelstore.offline.history import label_history, state_history
from tests.conftest import settings_for
from tests.offline.conftest import materialize
from tests.processors.test_core import ADDRESS, classified, created, tagged
from tests.processors.worker_process import WorkerProcess, with_processor

OrderUpdated = model('OrderUpdated')

T0 = datetime(2026, 1, 1, tzinfo=UTC)
T1, T2, T3 = T0 + timedelta(hours=1), T0 + timedelta(hours=2), T0 + timedelta(hours=3)
MS = timedelta(milliseconds=1)
SUFFIX = uuid4().hex[:6]
SEED, LATE, TIED = f"seed-{SUFFIX}", f"late-{SUFFIX}", f"tied-{SUFFIX}"


def at(report) -> datetime:
    return datetime.fromtimestamp(report.recorded_at_ms / 1000, UTC)


@pytest.fixture(scope="module")
def world(kafka_cluster, tmp_path_factory):
    """Three hand-made order stories and some demo data, processed online and archived."""
    directory = tmp_path_factory.mktemp("offline")
    settings = with_processor(settings_for(kafka_cluster.bootstrap_servers), directory / "data")
    ensure_topics(settings)
    worker = WorkerProcess(settings, directory / "worker.log").start()
    known = {}
    with Publisher(settings) as publisher:
        def one(name, event):
            known[name] = at(publisher.publish_many([event])[0])
            time.sleep(0.01)  # distinct log-append times

        # The seed: Not Fraud at t1, the address changes at t2, Fraud at t3.
        one("seed0", created(SEED, T0))
        one("seed1", classified(SEED, T1, "NOT_FRAUD"))
        one("seed2", OrderUpdated(entity_id=SEED, event_time=T2, source="checkout",
                                  payload={"shipping_address": {**ADDRESS, "country": "GB"}}))
        one("seed3", classified(SEED, T3, "FRAUD"))
        # A late event: the false-negative tag happened at t0+30min but arrives after the t1 verdict.
        one("late0", created(LATE, T0))
        one("late1", classified(LATE, T1, "NOT_FRAUD"))
        one("late2", tagged(LATE, T0 + timedelta(minutes=30), "false-negative"))
        # Ties: two verdicts with the same event_time, sent in one batch (one log-append time).
        one("tied0", created(TIED, T0))
        reports = publisher.publish_many([classified(TIED, T1, "FRAUD"), classified(TIED, T1, "NOT_FRAUD")])
        known["tied1"], known["tied2"] = at(reports[0]), at(reports[1])
        publisher.publish_many(list(generate(60, 20, seed=5)))
    try:
        warehouse = materialize(settings, directory / "warehouse")
    finally:
        worker.stop()
    TOPICS[warehouse.root] = settings.topics
    return warehouse, known


TOPICS = {}


def warehouse_topics(warehouse):
    return TOPICS[warehouse.root]


def fraud(warehouse, entity_id, **when):
    rows = as_of(warehouse, "fraud", entity_ids=[entity_id], **when).to_pylist()
    assert len(rows) == 1
    return rows[0]["value"]


def test_seed_timeline_on_the_known_axis(world):
    warehouse, known = world
    assert fraud(warehouse, SEED, known_at=known["seed0"] - MS) is None
    assert fraud(warehouse, SEED, known_at=known["seed0"]) is None  # created, not classified
    assert fraud(warehouse, SEED, known_at=known["seed1"] - MS) is None
    assert fraud(warehouse, SEED, known_at=known["seed1"]) == "negative"  # inclusive boundary
    assert fraud(warehouse, SEED, known_at=known["seed2"]) == "negative"
    assert fraud(warehouse, SEED, known_at=known["seed3"] - MS) == "negative"
    assert fraud(warehouse, SEED, known_at=known["seed3"]) == "positive"
    assert fraud(warehouse, SEED) == "positive"


def test_seed_timeline_on_the_valid_axis(world):
    warehouse, _ = world
    assert fraud(warehouse, SEED, valid_at=T0) is None
    assert fraud(warehouse, SEED, valid_at=T1 - MS) is None
    assert fraud(warehouse, SEED, valid_at=T1) == "negative"
    assert fraud(warehouse, SEED, valid_at=T2) == "negative"
    assert fraud(warehouse, SEED, valid_at=T3 - MS) == "negative"
    assert fraud(warehouse, SEED, valid_at=T3) == "positive"


def test_a_late_event_is_placed_by_event_time_on_the_valid_axis_only(world):
    warehouse, known = world
    # What the processor saw: negative at the verdict, positive once the late tag arrived.
    assert fraud(warehouse, LATE, known_at=known["late1"]) == "negative"
    assert fraud(warehouse, LATE, known_at=known["late2"]) == "positive"
    # With everything known now, the tag predates the verdict: positive from t1, never negative.
    assert fraud(warehouse, LATE, valid_at=T0 + timedelta(minutes=45)) is None
    assert fraud(warehouse, LATE, valid_at=T1) == "positive"
    # Bitemporal: valid at t1 as known before the tag arrived, and after.
    assert fraud(warehouse, LATE, valid_at=T1, known_at=known["late2"] - MS) == "negative"
    assert fraud(warehouse, LATE, valid_at=T1, known_at=known["late2"]) == "positive"


def test_equal_timestamps_are_ordered_by_the_log(world):
    warehouse, known = world
    assert fraud(warehouse, TIED, valid_at=T1) == "negative"  # same event_time: the later offset wins
    if known["tied1"] == known["tied2"]:  # one batch, one log-append time
        assert fraud(warehouse, TIED, known_at=known["tied1"]) == "negative"
    assert fraud(warehouse, TIED, known_at=known["tied2"]) == "negative"


def test_unknown_entities_get_null(world):
    warehouse, _ = world
    rows = as_of(warehouse, "fraud", entity_ids=["no-such-order", SEED]).to_pylist()
    assert [(r["entity_id"], r["value"]) for r in rows] == [("no-such-order", None), (SEED, "positive")]


def test_spine_keeps_rows_order_and_duplicates(world):
    warehouse, known = world
    spine = pd.DataFrame({
        "entity_id": [SEED, SEED, "no-such-order", LATE, SEED],
        "ts": [T1, T1, T1, T1, T3],
        "row": [1, 2, 3, 4, 5],
    })
    valid = as_of(warehouse, "fraud", spine=spine, valid_at="ts", output="pandas")
    assert valid["row"].tolist() == [1, 2, 3, 4, 5]
    assert [None if pd.isna(v) else v for v in valid["fraud"]] == ["negative", "negative", None, "positive", "positive"]

    spine_known = pl.DataFrame({"entity_id": [LATE, LATE, SEED], "ts": [known["late1"], known["late2"], known["seed1"] - MS]})
    result = as_of(warehouse, ["fraud", "manual_review"], spine=spine_known, known_at="ts", output="polars")
    assert result["fraud"].to_list() == ["negative", "positive", None]
    assert result.columns == ["entity_id", "ts", "fraud", "manual_review"]


def test_a_snapshot_of_all_entities_and_maturity(world):
    warehouse, known = world
    snapshot = as_of(warehouse, "fraud", known_at=known["late2"])
    values = dict(zip(snapshot.column("entity_id").to_pylist(), snapshot.column("value").to_pylist(), strict=True))
    assert values[SEED] == "positive" and values[LATE] == "positive"
    assert TIED not in values  # not yet known then
    # fraud matures 90 days after the order's first event (t0).
    before = as_of(warehouse, "fraud", entity_ids=[SEED], valid_at=T0 + timedelta(days=89), maturity="flag").to_pylist()
    after = as_of(warehouse, "fraud", entity_ids=[SEED], valid_at=T0 + timedelta(days=90), maturity="flag").to_pylist()
    assert (before[0]["value"], before[0]["mature"]) == ("positive", False)
    assert (after[0]["value"], after[0]["mature"]) == ("positive", True)
    assert as_of(warehouse, "fraud", entity_ids=[SEED], valid_at=T0 + timedelta(days=89), maturity="mature").num_rows == 0
    spine = pa.table({"entity_id": [SEED, SEED], "ts": pa.array([T0 + timedelta(days=89), T0 + timedelta(days=90)])})
    flagged = as_of(warehouse, "fraud", spine=spine, valid_at="ts", maturity="mature").to_pylist()
    assert [row["fraud"] for row in flagged] == [None, "positive"]


def test_offline_history_equals_what_the_processor_emitted(world):
    """Events published in event-time order: the re-fold gives the online versions, field for field."""
    warehouse, _ = world
    connection = warehouse.connect()
    declarations, rules = load_declarations(), load_rules()
    compared = 0
    for entity_type, declaration in declarations.items():
        states = state_history(connection, declaration, order="valid")
        offline = label_history(states, entity_type, [r for r in rules if r.entity_type == entity_type], declaration)
        connection.register("offline", offline.filter(pa.compute.invert(pa.compute.starts_with(offline["entity_id"], "late-"))))
        online = "SELECT * FROM labels WHERE entity_type = ? AND NOT starts_with(entity_id, 'late-')"
        assert connection.execute(f"SELECT count(*) FROM ({online} EXCEPT ALL SELECT * FROM offline)", [entity_type]).fetchall() == [(0,)]
        assert connection.execute(f"SELECT count(*) FROM (SELECT * FROM offline EXCEPT ALL {online})", [entity_type]).fetchall() == [(0,)]
        compared += offline.num_rows
    assert compared > 50


def test_bad_queries_say_what_is_wrong(world):
    warehouse, _ = world
    with pytest.raises(QueryError, match="unknown label 'fruad'; known labels: fraud"):
        as_of(warehouse, "fruad")
    with pytest.raises(QueryError, match="spine has no column 'when'"):
        as_of(warehouse, "fraud", spine=pd.DataFrame({"entity_id": ["a"], "ts": [T0]}), known_at="when")
    with pytest.raises(QueryError, match="is not an ISO 8601 time"):
        as_of(warehouse, "fraud", known_at="yesterday")
    with pytest.raises(QueryError, match="one entity type at a time"):
        as_of(warehouse, ["fraud", "misinformation"])


def test_check_finds_no_divergence_and_names_the_first_one(world, monkeypatch):
    from typer.testing import CliRunner

    from labelstore.cli import app
    from labelstore.offline.check import check

    warehouse, _ = world
    report = check(warehouse)
    assert report.consistent and {r.label for r in report.labels} == {"fraud", "manual_review", "misinformation"}
    assert sum(r.matching for r in report.labels) > 50
    monkeypatch.setenv("LABELSTORE_WAREHOUSE__PATH", str(warehouse.root))
    assert CliRunner().invoke(app, ["check"]).exit_code == 0

    # The same rule version with another expression: what the processor emitted no longer matches.
    rules = [r.model_copy(update={"expression": "CASE WHEN classification = 'FRAUD' THEN 'positive' END"})
             if r.name == "fraud" else r for r in load_rules()]
    report = check(warehouse, rules)
    fraud = next(r for r in report.labels if r.label == "fraud")
    assert not report.consistent and fraud.extra > 0 and fraud.first_divergence is not None
    assert next(r for r in report.labels if r.label == "manual_review").consistent


def test_explain_shows_which_event_changed_which_label(world, tmp_path):
    from labelstore.offline.explain import explain, plot

    warehouse, _ = world
    explanation = explain(warehouse, "order", LATE)
    assert [e["event_type"] for e in explanation.events] == ["OrderCreated", "OrderClassified", "OrderTagged"]
    tag = explanation.events[2]["event_id"]
    assert [(v["previous_value"], v["value"]) for v in explanation.changes_caused_by(tag)] == [("negative", "positive")]
    assert [v["value"] for v in explanation.valid] == ["positive"]  # by business time it was never negative
    png = plot(explanation, tmp_path / "late.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(QueryError, match="no archived events"):
        explain(warehouse, "order", "no-such-order")


def test_a_snapshot_is_reproducible_after_new_events(world, kafka_cluster, tmp_path):
    from labelstore.materializers.materializer import Materializer
    import pyarrow.parquet as pq

    from labelstore.offline.snapshot import SnapshotExistsError, content_hash, reread, snapshot

    warehouse, known = world
    first = snapshot(warehouse, "train-v1", ["fraud"], known_at=known["late2"])
    bitemporal = snapshot(warehouse, "train-v1-valid", ["fraud"], known_at=known["late2"], valid_at=T1)
    assert first["rows"] >= 2 and first["rule_versions"] == {"fraud": 1}
    assert (warehouse.snapshots_dir / "train-v1" / "labels.parquet").exists()

    # New events arrive for a known entity and a new one, and are archived.
    settings = settings_for(kafka_cluster.bootstrap_servers)
    settings = settings.model_copy(update={"topics": warehouse_topics(warehouse)})
    with Publisher(settings) as publisher:
        publisher.publish_many([tagged(LATE, T0, "vip"), created(f"new-{SUFFIX}", T0), classified(f"new-{SUFFIX}", T1, "FRAUD")])
    from labelstore.settings import WarehouseSettings
    Materializer(settings.model_copy(update={"warehouse": WarehouseSettings(path=warehouse.root)})).run(until_caught_up=True)

    assert snapshot(warehouse, "train-v1", ["fraud"], known_at=known["late2"])["content_sha256"] == first["content_sha256"]
    again = snapshot(warehouse, "train-v1-valid", ["fraud"], known_at=known["late2"], valid_at=T1)
    assert again["content_sha256"] == bitemporal["content_sha256"]

    # Each manifest names the Iceberg snapshots it read, tagged in their tables; re-read by those
    # ids, after the new events, the labels are the same rows.
    events = warehouse.table("events")
    assert first["iceberg_snapshots"]["events"] != events.current_snapshot().snapshot_id
    assert events.metadata.refs["labelstore-snapshot-train-v1"].snapshot_id == first["iceberg_snapshots"]["events"]
    count = "SELECT count(*) FROM events"
    then = warehouse.at(first["iceberg_snapshots"]).connect().execute(count).fetchone()[0]
    assert then == warehouse.connect().execute(count).fetchone()[0] - 3  # the 3 events published since
    written = pq.read_table(warehouse.snapshots_dir / "train-v1" / "labels.parquet")
    assert reread(warehouse, "train-v1").equals(written)
    assert content_hash(reread(warehouse, "train-v1-valid")) == bitemporal["content_sha256"]
    with pytest.raises(SnapshotExistsError, match="exists with other content"):
        snapshot(warehouse, "train-v1", ["fraud"], known_at=known["tied2"])
    with pytest.raises(QueryError, match="the events archive only reaches"):
        snapshot(warehouse, "future", ["fraud"], known_at=datetime.now(UTC) + timedelta(days=1))

    # Expiring every snapshot made until now keeps the current and the tagged ones: the archive
    # and the pinned snapshots read as before.
    with Publisher(settings) as publisher:  # one more commit: the one before is neither current nor tagged
        publisher.publish_many([tagged(f"new-{SUFFIX}", T1, "vip")])
    Materializer(settings.model_copy(update={"warehouse": WarehouseSettings(path=warehouse.root)})).run(until_caught_up=True)
    before = warehouse.connect().execute(count).fetchone()[0]
    kept = {}
    for dataset in ("events", "label_versions"):
        table = warehouse.table(dataset)
        kept[dataset] = {table.current_snapshot().snapshot_id} | {ref.snapshot_id for ref in table.metadata.refs.values()}
    existed = {dataset: len(warehouse.table(dataset).metadata.snapshots) for dataset in kept}
    expired = warehouse.expire_snapshots(datetime.now(UTC))
    for dataset, ids in kept.items():
        assert {s.snapshot_id for s in warehouse.table(dataset).metadata.snapshots} == ids
        assert expired[dataset] == existed[dataset] - len(ids)
    assert sum(expired.values()) > 0
    assert warehouse.connect().execute(count).fetchone()[0] == before
    assert reread(warehouse, "train-v1").equals(written)
    assert content_hash(reread(warehouse, "train-v1-valid")) == bitemporal["content_sha256"]
