"""Label monitoring: drift statistics by hand, the report's tables on a hand-made warehouse, and
drift alerts on demo data that went through a real worker and the materializer.

The demo's orders arrive over 30 days of business time (event_time), so windows are taken on the
valid axis. The unchanged case compares two weeks of the same generator; the shifted case is a
week in which the fraud review team tags a third of the orders judged NOT_FRAUD false-negative.
"""

from __future__ import annotations

import json
import math
import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from uuid import uuid4

import pyarrow as pa
import pytest
from confluent_kafka import Consumer, TopicPartition
from typer.testing import CliRunner

from labelstore.events.admin import ensure_topics
from labelstore.events.publisher import Publisher
from labelstore.offline.asof import QueryError
from labelstore.offline.drift import PSI_EPSILON, chi_square, psi
from labelstore.offline.monitor import DriftThresholds, monitor_label
from labelstore.settings import MonitoringSettings, WarehouseSettings
from labelstore.warehouse import EVENTS_SCHEMA, LABEL_VERSIONS_SCHEMA, Warehouse
from tests.conftest import settings_for
from tests.fraud_example import EXAMPLE, generate
from tests.offline.conftest import materialize
from tests.processors.test_core import tagged
from tests.processors.worker_process import WorkerProcess, with_processor

DAY = timedelta(days=1)
D1 = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday


# (a) The statistics, by hand and against an independent computation.

def test_psi_of_a_hand_computed_example():
    # shares 0.5/0.5 -> 0.8/0.2: 0.3 ln(0.8/0.5) + (-0.3) ln(0.2/0.5)
    expected = 0.3 * math.log(1.6) - 0.3 * math.log(0.4)
    assert psi({"negative": 50, "positive": 50}, {"negative": 80, "positive": 20}) == pytest.approx(expected)
    assert expected == pytest.approx(0.41589, abs=1e-5)
    assert psi({"a": 7, "b": 3}, {"a": 70, "b": 30}) == pytest.approx(0.0)


def test_psi_counts_an_empty_bin_as_epsilon():
    # reference all "a"; current half "a", half "b": b's reference share is epsilon, not 0.
    expected = (0.5 - 1.0) * math.log(0.5 / 1.0) + (0.5 - PSI_EPSILON) * math.log(0.5 / PSI_EPSILON)
    assert psi({"a": 10}, {"a": 5, "b": 5}) == pytest.approx(expected)


def test_chi_square_agrees_with_pearsons_sum():
    reference, current = {"negative": 120, "positive": 10, "x": 5}, {"negative": 90, "positive": 40, "x": 3}
    values = sorted(reference)
    rows = [[reference[v] for v in values], [current[v] for v in values]]
    total = sum(map(sum, rows))
    statistic = sum((rows[i][j] - sum(rows[i]) * (rows[0][j] + rows[1][j]) / total) ** 2
                    / (sum(rows[i]) * (rows[0][j] + rows[1][j]) / total) for i in range(2) for j in range(3))
    # Survival function of chi-square with 2 degrees of freedom: exp(-x / 2).
    result = chi_square(reference, current)
    assert result.statistic == pytest.approx(statistic) and result.dof == 2
    assert result.p_value == pytest.approx(math.exp(-statistic / 2))
    assert chi_square({"negative": 10}, {"negative": 30}).p_value == 1.0


def test_monitoring_settings_per_label_and_refused_keys():
    settings = MonitoringSettings.model_validate({"psi": 0.3, "labels": {"fraud": {"p_value": 0.05,
                                                                                   "positive_value": "positive"}}})
    fraud, other = settings.for_label("fraud"), settings.for_label("misinformation")
    assert (fraud.psi, fraud.p_value, fraud.positive_value) == (0.3, 0.05, "positive")
    assert (other.psi, other.p_value, other.positive_value) == (0.3, 0.01, None)
    with pytest.raises(ValueError, match="psy"):
        MonitoringSettings.model_validate({"labels": {"fraud": {"psy": 0.1}}})


# (b) The report's tables on a warehouse written by hand: every number below is counted by hand.

def _write(root, dataset, partition, rows, schema):
    column, _, value = partition.partition("=")
    table = pa.Table.from_pylist(rows, schema=schema)
    Warehouse(root).append(dataset, table.append_column(column, pa.array([value] * len(rows), pa.string())))


def _version(entity_id, value, previous, at, offset, *, rule_version=1, recorded_at=None):
    return {"version_id": str(uuid4()), "entity_type": "order", "entity_id": entity_id, "rule_version": rule_version,
            "value": value, "previous_value": previous, "event_time": at, "recorded_at": recorded_at or at,
            "event_id": str(uuid4()),
            "cause_topic": "order.events", "cause_partition": 0, "cause_offset": offset}


def _event(entity_id, at, offset):
    return {"event_id": str(uuid4()), "entity_id": entity_id, "event_type": "OrderCreated", "event_time": at,
            "recorded_at": at, "source": "test", "payload": "{}", "topic": "order.events", "partition": 0,
            "offset": offset, "avro": b""}


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """e1: negative on day 1, flips to positive on day 3; e2: negative on day 2; e3: never labelled."""
    root = tmp_path_factory.mktemp("small-warehouse")
    _write(root, "label_versions", "label=fraud", [
        _version("e1", "negative", None, D1 + timedelta(hours=1), 1),
        _version("e2", "negative", None, D1 + DAY, 2),
        _version("e1", "positive", "negative", D1 + 2 * DAY, 3)], LABEL_VERSIONS_SCHEMA)
    _write(root, "events", "entity_type=order", [
        _event("e1", D1, 0), _event("e2", D1, 1), _event("e3", D1 + DAY + timedelta(hours=12), 2)], EVENTS_SCHEMA)
    return Warehouse(root, repository=EXAMPLE)


def test_report_tables_on_a_hand_made_warehouse(small):
    report = monitor_label(small, "fraud", window="day", axis="valid", positive_value="positive",
                           thresholds=DriftThresholds(min_labels=1))
    days = [D1, D1 + DAY, D1 + 2 * DAY]
    assert report.distribution.select(["window_start", "value", "labels", "share", "standing"]).to_pylist() == [
        {"window_start": days[0], "value": "negative", "labels": 1, "share": 1.0, "standing": 1},
        {"window_start": days[1], "value": "negative", "labels": 1, "share": 1.0, "standing": 2},
        {"window_start": days[2], "value": "negative", "labels": 0, "share": 0.0, "standing": 1},
        {"window_start": days[2], "value": "positive", "labels": 1, "share": 1.0, "standing": 1}]
    rates = report.rates.drop(["window_start", "rule_version"]).to_pylist()
    assert rates == [
        {"labels": 1, "positive_rate": 0.0, "labelled": 1, "unlabelled": 1, "coverage": 0.5, "new_labels": 1, "flips": 0},
        {"labels": 1, "positive_rate": 0.0, "labelled": 2, "unlabelled": 1, "coverage": 2 / 3, "new_labels": 1, "flips": 0},
        {"labels": 1, "positive_rate": 1.0, "labelled": 2, "unlabelled": 1, "coverage": 2 / 3, "new_labels": 0, "flips": 1}]
    flips = report.flips.to_pylist()
    assert len(flips) == 1 and flips[0]["count"] == 1 and flips[0]["p50_days"] == pytest.approx(2.0)
    assert (flips[0]["maturity_days"], flips[0]["beyond_maturity"]) == (90.0, 0)
    # First event -> first label: 1 hour (e1) and 24 hours (e2); the median interpolates.
    ttl = report.time_to_label.to_pylist()
    assert ttl[0]["entities"] == 2 and ttl[0]["p50_seconds"] == pytest.approx((3_600 + 86_400) / 2)
    # Default windows: current = the last complete day before the data's end (day 2), reference day 1.
    pooled = [d for d in report.drift if d.rule_version is None]
    assert {d.current for d in pooled} == {(D1 + DAY, D1 + 2 * DAY)}
    assert {d.reference for d in pooled} == {(D1, D1 + DAY)}
    assert not report.crossed
    assert set(report.to_pandas()) == {"distribution", "rates", "flips", "time_to_label", "drift"}


def test_flips_beyond_a_short_maturity_are_counted(small):
    # The same warehouse read with a fraud rule that claims maturity after one day: e1 flipped
    # two days after its first event, so late.
    short = EXAMPLE.rules[0].model_copy(update={"maturity_days": 1.0})
    assert short.name == "fraud"
    repository = SimpleNamespace(rules=[short], config={}, root=EXAMPLE.root)
    report = monitor_label(Warehouse(small.root, repository=repository), "fraud", axis="valid")
    assert report.flips.select(["count", "maturity_days", "beyond_maturity", "beyond_maturity_share"]).to_pylist() == [
        {"count": 1, "maturity_days": 1.0, "beyond_maturity": 1, "beyond_maturity_share": 1.0}]


@pytest.fixture(scope="module")
def new_version(tmp_path_factory):
    """Day 1: v1 labels 60 orders, 6 positive. Day 2 (business time): v2 labels 60 more, 30
    positive, but the system learned of them only on day 3 (recorded_at)."""
    root = tmp_path_factory.mktemp("new-version-warehouse")
    day1 = [_version(f"a{i}", "positive" if i < 6 else "negative", None, D1 + timedelta(minutes=i), i) for i in range(60)]
    day2 = [_version(f"b{i}", "positive" if i < 30 else "negative", None, D1 + DAY + timedelta(minutes=i), 60 + i,
                     rule_version=2, recorded_at=D1 + 2 * DAY + timedelta(minutes=i)) for i in range(60)]
    _write(root, "label_versions", "label=fraud", day1 + day2, LABEL_VERSIONS_SCHEMA)
    _write(root, "events", "entity_type=order", [_event(v["entity_id"], v["event_time"] - timedelta(minutes=1), i)
                                                 for i, v in enumerate(day1 + day2)], EVENTS_SCHEMA)
    return Warehouse(root, repository=EXAMPLE)


def test_a_new_rule_version_shows_apart_and_shifts_the_pooled_drift(new_version):
    valid = monitor_label(new_version, "fraud", axis="valid", positive_value="positive",
                          reference=(D1, D1 + DAY), current=(D1 + DAY, D1 + 2 * DAY))
    assert [(r["window_start"], r["rule_version"], r["labels"], r["positive_rate"]) for r in valid.rates.to_pylist()] == [
        (D1, 1, 60, 0.1), (D1 + DAY, 1, 0, None), (D1 + DAY, 2, 60, 0.5)]
    # v1 labelled nothing on day 2 and v2 nothing on day 1: only the pooled drift can be judged.
    assert {d.rule_version for d in valid.drift} == {None}
    expected = psi({"negative": 54, "positive": 6}, {"negative": 30, "positive": 30})
    assert next(d for d in valid.drift if d.statistic == "psi").value == pytest.approx(expected)
    assert {d.statistic for d in valid.crossed} == {"psi", "chi2"}
    # On the known axis, v2's labels arrived on day 3: day 2 produced nothing.
    known = monitor_label(new_version, "fraud", axis="known", positive_value="positive")
    assert [(r["window_start"], r["rule_version"], r["labels"]) for r in known.rates.to_pylist() if r["labels"]] == [
        (D1, 1, 60), (D1 + 2 * DAY, 2, 60)]
    # The default current window is the last complete one (day 2), empty here: not judged.
    assert all(d.note and not d.crossed for d in known.drift)


def test_bad_input_is_refused_with_the_option_named(small):
    with pytest.raises(QueryError, match="unknown label 'fruad'"):
        monitor_label(small, "fruad")
    with pytest.raises(QueryError, match="window must be one of hour, day, week, not 'month'"):
        monitor_label(small, "fraud", window="month")
    with pytest.raises(QueryError, match="axis must be known or valid"):
        monitor_label(small, "fraud", axis="business")
    with pytest.raises(QueryError, match="current window: start .* must be before end"):
        monitor_label(small, "fraud", current=(D1 + DAY, D1))


# (c) Demo data through a real worker and the materializer; drift on the valid axis, per week.

WEEK = timedelta(weeks=1)
W1 = datetime(2026, 1, 12, tzinfo=UTC)  # Mondays: the demo's orders arrive from 2026-01-05 to 2026-02-04
W2, W3 = W1 + WEEK, W1 + 2 * WEEK
STATISTICS: dict[str, dict] = {}  # what the drift tests measured, printed at the end of the module


def false_negative_burst(events, low: datetime, high: datetime, every: int = 3) -> list:
    """The fraud review team tags every ``every``-th order created in [low, high) that the model
    judged NOT_FRAUD once (and never re-judged) false-negative, three hours after its creation."""
    created_at, verdicts = {}, {}
    for event in events:
        if event.event_type == "OrderCreated":
            created_at[event.entity_id] = event.event_time
        elif event.event_type == "OrderClassified":
            verdicts.setdefault(event.entity_id, []).append(event.payload.classification)
    chosen = sorted(e for e, at in created_at.items()
                    if low <= at < high - timedelta(hours=3) and verdicts.get(e) == ["NOT_FRAUD"])
    return [tagged(e, created_at[e] + timedelta(hours=3), "false-negative") for e in chosen[::every]]


@pytest.fixture(scope="module")
def demo(kafka_cluster, tmp_path_factory):
    directory = tmp_path_factory.mktemp("monitor")
    settings = with_processor(settings_for(kafka_cluster.bootstrap_servers), directory / "data")
    ensure_topics(settings)
    events = list(generate(600, 0, seed=21))
    burst = false_negative_burst(events, W3, W3 + WEEK)
    worker = WorkerProcess(settings, directory / "worker.log").start()
    try:
        with Publisher(settings) as publisher:
            publisher.publish_many(events)
            publisher.publish_many(burst)
        warehouse = materialize(settings, directory / "warehouse")
    finally:
        worker.stop()
    settings = settings.model_copy(update={"warehouse": WarehouseSettings(path=warehouse.root)})
    yield settings, warehouse, len(burst)
    print("\ndrift statistics measured:", json.dumps(STATISTICS, indent=1))


def _pooled(report, statistic):
    return next(d for d in report.drift if d.rule_version is None and d.statistic == statistic)


def _record(name, report):
    psi_, chi2 = _pooled(report, "psi"), _pooled(report, "chi2")
    STATISTICS[name] = {"psi": round(psi_.value, 4), "chi2": round(chi2.value, 3), "p_value": float(f"{chi2.p_value:.3g}"),
                        "labels": [psi_.reference_labels, psi_.current_labels]}


def test_an_unchanged_stream_does_not_alert(demo):
    _, warehouse, _ = demo
    report = monitor_label(warehouse, "fraud", window="week", axis="valid", reference=(W1, W2), current=(W2, W3),
                           positive_value="positive")
    _record("unchanged", report)
    psi_, chi2 = _pooled(report, "psi"), _pooled(report, "chi2")
    assert min(psi_.reference_labels, psi_.current_labels) >= 100  # enough labels to be judged
    assert not psi_.note and psi_.value < 0.2 and chi2.p_value > 0.01
    assert not report.crossed


def test_a_burst_of_false_negative_tags_alerts(demo):
    _, warehouse, injected = demo
    report = monitor_label(warehouse, "fraud", window="week", axis="valid", reference=(W2, W3),
                           current=(W3, W3 + WEEK), positive_value="positive")
    _record("false-negative burst", report)
    assert injected >= 20
    psi_, chi2 = _pooled(report, "psi"), _pooled(report, "chi2")
    assert psi_.crossed and psi_.value > 0.2 and chi2.crossed and chi2.p_value < 0.01
    # The monitoring page shows the same shift: the burst week's positive rate and its flips.
    rates = {row["window_start"]: row for row in report.rates.to_pylist()}
    assert rates[W3]["positive_rate"] > 2 * rates[W2]["positive_rate"]
    assert rates[W3]["flips"] >= injected


def test_monitor_alert_publishes_to_the_alerts_topic_and_exits_non_zero(demo):
    from labelstore.cli import app

    settings, warehouse, _ = demo
    environment = {**settings.to_environment(), "LABELSTORE_MONITORING__LABELS": '{"fraud": {"positive_value": "positive"}}'}
    common = ["monitor", "fraud", "--window", "week", "--axis", "valid", "--alert"]
    runner = CliRunner()
    quiet = runner.invoke(app, [*common, "--reference", "2026-01-12..2026-01-19", "--current", "2026-01-19..2026-01-26"],
                          env=environment)
    assert quiet.exit_code == 0, quiet.output
    assert "no drift alert" in quiet.output
    loud = runner.invoke(app, [*common, "--reference", "2026-01-19..2026-01-26", "--current", "2026-01-26..2026-02-02"],
                         env=environment)
    assert loud.exit_code == 3, loud.output
    alerts = _read_alerts(settings)
    pooled = {a["statistic"]: a for a in alerts if a["rule_version"] is None}
    assert set(pooled) == {"psi", "chi2"} and all(a["label"] == "fraud" for a in alerts)
    expected = monitor_label(warehouse, "fraud", window="week", axis="valid", reference=(W2, W3), current=(W3, W3 + WEEK))
    assert pooled["psi"]["value"] == pytest.approx(_pooled(expected, "psi").value)
    assert pooled["chi2"]["value"] == pytest.approx(_pooled(expected, "chi2").value)
    assert pooled["psi"]["threshold"] == 0.2 and pooled["chi2"]["threshold"] == 0.01 and pooled["chi2"]["p_value"] < 0.01
    assert pooled["psi"]["current"] == {"start": "2026-01-26T00:00:00+00:00", "end": "2026-02-02T00:00:00+00:00"}
    assert (pooled["psi"]["window"], pooled["psi"]["axis"]) == ("week", "valid") and pooled["psi"]["computed_at"]
    # One alert per crossed threshold (all rule versions, and v1 alone); the quiet run wrote none.
    assert len(alerts) == len(expected.crossed) == 4


def test_monitor_names_the_bad_option(demo):
    from labelstore.cli import app

    settings, _, _ = demo
    runner = CliRunner()
    for arguments, message in ((["--current", "2026-01-26"], "--current '2026-01-26': write START..END"),
                               (["--reference", "2026-02-01..2026-01-01"], "the start must be before the end"),
                               (["--p-value", "2"], "--p-value: Input should be less than 1"),
                               (["--window", "month"], "window must be one of hour, day, week")):
        result = runner.invoke(app, ["monitor", "fraud", *arguments], env=settings.to_environment())
        assert result.exit_code == 1 and message in result.output, result.output
    result = runner.invoke(app, ["monitor", "fruad"], env=settings.to_environment())
    assert result.exit_code == 1 and "unknown label 'fruad'" in result.output


def _read_alerts(settings, timeout: float = 20.0) -> list[dict]:
    consumer = Consumer({"bootstrap.servers": settings.kafka.bootstrap_servers, "group.id": f"alerts-{uuid4().hex}",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(settings.topics.alerts_topic, 0, 0)])
    records, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                if records:
                    break
                continue
            assert message.error() is None, message.error()
            assert message.key() == b"fraud"
            records.append(json.loads(message.value()))
    finally:
        consumer.close()
    return records
