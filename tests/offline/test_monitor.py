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
from uuid import uuid4

import pyarrow as pa
import pyarrow.parquet as pq
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
    folder = root / dataset / partition / "date=2026-03-02"
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), folder / "part-0.parquet")


def _version(entity_id, value, previous, at, offset):
    return {"version_id": str(uuid4()), "entity_type": "order", "entity_id": entity_id, "rule_version": 1,
            "value": value, "previous_value": previous, "event_time": at, "recorded_at": at, "event_id": str(uuid4()),
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
    # Against a maturity of one day, the day-2 flip came late.
    report = monitor_label(small, "fraud", window="day", axis="valid", positive_value="positive")
    assert report.flips.column("beyond_maturity").to_pylist() == [0]
    from labelstore.offline import monitor

    late = monitor._flips  # the maturity comes from the rule; ask the table with a shorter one
    connection = small.connect()
    monitor._prepare(connection, EXAMPLE.rules[0].model_copy(update={"maturity_days": 1.0}), "event_time", None, None)
    table = late(connection, D1, {1: 1.0}, None)
    assert table.column("beyond_maturity").to_pylist() == [1]


def test_bad_input_is_refused_with_the_option_named(small):
    with pytest.raises(QueryError, match="unknown label 'fruad'"):
        monitor_label(small, "fruad")
    with pytest.raises(QueryError, match="window must be one of hour, day, week, not 'month'"):
        monitor_label(small, "fraud", window="month")
    with pytest.raises(QueryError, match="axis must be known or valid"):
        monitor_label(small, "fraud", axis="business")
    with pytest.raises(QueryError, match="current window: start .* must be before end"):
        monitor_label(small, "fraud", current=(D1 + DAY, D1))
