"""Parity: as_of on Spark gives the DuckDB engine's answers, row for row, on the same warehouse.

The warehouse is test_asof's (three hand-made order stories: a mutable label, a late event, two
verdicts at one event time; plus demo data), built through a real worker and the materializer.
Every case asks both engines the same question and compares schemas and rows in order; the number
of rows compared is printed per case (``-s``) so a parity that compares nothing cannot pass.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from labelstore.offline.asof import QueryError, as_of
from tests.offline.test_asof import LATE, MS, SEED, T0, T1, T3, TIED, world  # noqa: F401 - the module's fixture

COMPARED: dict[str, int] = {}


def same(warehouse, case: str, labels, **question) -> pa.Table:
    """Both engines' answers, which must be equal; returns DuckDB's."""
    expected = as_of(warehouse, labels, **question)
    actual = as_of(warehouse, labels, engine="spark", **question)
    assert actual.schema == expected.schema, case
    assert actual.to_pylist() == expected.to_pylist(), case
    COMPARED[case] = COMPARED.get(case, 0) + expected.num_rows
    return expected


@pytest.fixture(scope="module", autouse=True)
def report_counts():
    yield
    print("\nrows compared per case:", ", ".join(f"{case} {rows}" for case, rows in COMPARED.items()))


def versions(warehouse) -> pa.Table:
    connection = warehouse.connect()
    try:
        return connection.sql("SELECT entity_id, recorded_at, event_time FROM labels WHERE label = 'fraud' "
                              "ORDER BY recorded_at").to_arrow_table()
    finally:
        connection.close()


def hard_spine(warehouse, time_column: str) -> pa.Table:
    """Every fraud version's entity just before, exactly at and just after its time; unknown
    entities, rows before any label, a NULL time, and duplicates; shuffled, row numbers kept."""
    known = versions(warehouse)
    times = known.column(time_column)
    entities = pa.chunked_array(known.column("entity_id").chunks * 3 + [pa.array(["no-such-order", SEED, SEED])])
    ts = pa.chunked_array([pc.subtract(times, pa.scalar(MS)).combine_chunks(), times.combine_chunks(),
                           pc.add(times, pa.scalar(MS)).combine_chunks(),
                           pa.array([T1, T0 - timedelta(days=1), None], times.type)])
    spine = pa.table({"entity_id": entities, "ts": ts})
    rng = np.random.default_rng(3)
    order = rng.permutation(spine.num_rows)
    duplicates = rng.integers(0, spine.num_rows, size=spine.num_rows // 5)
    spine = spine.take(pa.array(np.concatenate([order, duplicates])))
    return spine.append_column("row", pa.array(np.arange(spine.num_rows)))


def test_point_queries_on_the_known_axis(world, spark):
    warehouse, known = world
    for name, at in sorted(known.items()):
        for moment in (at - MS, at):
            same(warehouse, "known point", "fraud", known_at=moment, entity_ids=[SEED, LATE, TIED, "no-such-order"])
    same(warehouse, "known snapshot", ["fraud", "manual_review"], known_at=known["late2"])
    same(warehouse, "known snapshot", "fraud")  # latest


def test_point_queries_on_the_valid_axis_and_bitemporal(world, spark):
    warehouse, known = world
    for moment in (T0, T1 - MS, T1, T0 + timedelta(minutes=45), T3 - MS, T3):
        same(warehouse, "valid point", "fraud", valid_at=moment, entity_ids=[SEED, LATE, TIED, "no-such-order"])
    same(warehouse, "valid snapshot", ["fraud", "manual_review"], valid_at=T1)
    late = same(warehouse, "bitemporal point", "fraud", valid_at=T1, known_at=known["late2"] - MS, entity_ids=[LATE])
    assert late.column("value").to_pylist() == ["negative"]  # the late tag not yet known
    same(warehouse, "bitemporal point", "fraud", valid_at=T1, known_at=known["late2"], entity_ids=[LATE])
    same(warehouse, "bitemporal snapshot", "fraud", valid_at=T3, known_at=known["tied1"])


def test_spines_on_the_known_axis(world, spark):
    warehouse, known = world
    spine = hard_spine(warehouse, "recorded_at")
    result = same(warehouse, "known spine", ["fraud", "manual_review"], spine=spine, known_at="ts")
    assert result.column("row").to_pylist() == list(range(spine.num_rows))  # order and duplicates kept
    assert result.column("fraud").null_count > 0 and result.column("fraud").null_count < spine.num_rows
    tied = pa.table({"entity_id": [TIED, TIED], "ts": pa.array([known["tied1"], known["tied2"]])})
    assert same(warehouse, "known spine", "fraud", spine=tied, known_at="ts").column("fraud").to_pylist()[-1] == "negative"


def test_spines_on_the_valid_axis_and_bitemporal(world, spark):
    warehouse, known = world
    spine = hard_spine(warehouse, "event_time")
    same(warehouse, "valid spine", ["fraud", "manual_review"], spine=spine, valid_at="ts")
    same(warehouse, "bitemporal spine", "fraud", spine=spine, valid_at="ts", known_at=known["late2"] - MS)
    equal_times = pa.table({"entity_id": [TIED, LATE, LATE], "ts": pa.array([T1, T1, T0 + timedelta(minutes=30)])})
    answers = same(warehouse, "valid spine", "fraud", spine=equal_times, valid_at="ts").column("fraud").to_pylist()
    assert answers == ["negative", "positive", None]  # ties by the log; the late tag in its place


def test_maturity_modes(world, spark):
    warehouse, _ = world
    for maturity in ("flag", "mature"):
        for days in (89, 90):
            same(warehouse, f"maturity {maturity}", "fraud", entity_ids=[SEED, "no-such-order"],
                 valid_at=T0 + timedelta(days=days), maturity=maturity)
        spine = pa.table({"entity_id": [SEED, SEED, LATE, "no-such-order"],
                          "ts": pa.array([T0 + timedelta(days=89), T0 + timedelta(days=90), T1, T1])})
        same(warehouse, f"maturity {maturity}", ["fraud", "manual_review"], spine=spine, valid_at="ts", maturity=maturity)
        same(warehouse, f"maturity {maturity}", "fraud", spine=spine, known_at="ts", maturity=maturity)


def test_outputs_and_errors(world, spark):
    warehouse, known = world
    spine = pa.table({"entity_id": [SEED, LATE], "ts": pa.array([known["seed3"], known["late1"]])})
    for output in ("pandas", "polars"):
        expected = as_of(warehouse, "fraud", spine=spine, known_at="ts", output=output)
        actual = as_of(warehouse, "fraud", spine=spine, known_at="ts", output=output, engine="spark")
        assert actual.equals(expected)
    with pytest.raises(QueryError, match="unknown label 'fruad'"):
        as_of(warehouse, "fruad", engine="spark")
    with pytest.raises(QueryError, match="spine has no column 'when'"):
        as_of(warehouse, "fraud", spine=spine, known_at="when", engine="spark")
    with pytest.raises(QueryError, match="engine must be duckdb or spark"):
        as_of(warehouse, "fraud", engine="trino")


# ----------------------------------------------------------------------------------------------
# Backfills: the rule's SQL translated and evaluated by Spark over the same state history


def backfill_rows(warehouse, rule, engine: str) -> list[dict]:
    import pyarrow.parquet as pq

    from labelstore.offline.backfill import backfill

    result = backfill(warehouse, rule, engine=engine)
    return pq.read_table(result.path).to_pylist()


def test_backfills_equal_duckdb_backfills(world, spark):
    from labelstore.rules.model import load_rules

    warehouse, known = world
    rules = {rule.name: rule for rule in load_rules()}
    tagged = rules["fraud"].model_copy(update={  # list_contains -> ARRAY_CONTAINS, array_length -> SIZE
        "version": 2, "expression": "CASE WHEN list_contains(tags, 'false-negative') THEN 'positive' "
                                    "WHEN array_length(tags) > 0 OR classification = 'FRAUD' THEN 'tagged' END"})
    flagged = rules["fraud"].model_copy(update={"version": 3, "value_type": "boolean",
                                                "expression": "classification = 'FRAUD' AND address_changes > 0"})
    for rule in (rules["fraud"], rules["manual_review"], tagged, flagged):
        expected = backfill_rows(warehouse, rule, "duckdb")
        actual = backfill_rows(warehouse, rule, "spark")  # the same file, written again
        assert actual == expected and expected, rule.key
        COMPARED["backfill"] = COMPARED.get("backfill", 0) + len(expected)
    # As-of on a backfilled version, both engines reading what Spark wrote.
    spine = hard_spine(warehouse, "recorded_at")
    same(warehouse, "backfilled spine", "fraud", spine=spine, known_at="ts", rules=[tagged], rule_versions={"fraud": 2})


def test_a_rule_that_does_not_translate_is_refused_with_the_reason(world, spark):
    from labelstore.offline.backfill import backfill
    from labelstore.offline.spark.translate import UntranslatableRuleError
    from labelstore.rules.model import LabelRule

    warehouse, _ = world

    def rule(version: int, expression: str, value_type: str = "string") -> LabelRule:
        return LabelRule(name="fraud", version=version, entity_type="order", expression=expression, value_type=value_type)

    unknown = rule(11, "CASE WHEN list_aggregate(tags, 'count') > 1 THEN 'many' END")
    with pytest.raises(UntranslatableRuleError, match=r"fraud v11: the expression `CASE WHEN list_aggregate\(tags, "
                                                      r"'count'\) > 1 THEN 'many' END` does not translate .*"
                                                      r"list_aggregate\(\): no Spark equivalent"):
        backfill(warehouse, unknown, engine="spark")
    mistyped = rule(12, "CASE WHEN len(tags) > 1 THEN 'many' END")  # DuckDB's len of a list; Spark's LENGTH takes text
    with pytest.raises(UntranslatableRuleError, match=r"fraud v12: .*Spark rejects its translation .*LENGTH\(tags\)"):
        backfill(warehouse, mistyped, engine="spark")
    # Translated and accepted by Spark, but it means something else: DuckDB's substring from 0
    # counts the position before the first character, Spark's starts at the first.
    differing = rule(13, "substring(classification, 0, 3)")
    with pytest.raises(UntranslatableRuleError, match=r"fraud v13: .*DuckDB and Spark disagree on the state "
                                                      r"\{'classification': '(NOT_)?FRAUD'\}: DuckDB '(FR|NO)', Spark '(FRA|NOT)'"):
        backfill(warehouse, differing, engine="spark")


def test_the_cli_asks_spark(world, spark, monkeypatch, tmp_path):
    import pyarrow.parquet as pq
    from typer.testing import CliRunner

    from labelstore.cli import app

    warehouse, known = world
    monkeypatch.setenv("LABELSTORE_WAREHOUSE__PATH", str(warehouse.root))
    written = {}
    for engine in ("duckdb", "spark"):
        written[engine] = tmp_path / f"{engine}.parquet"
        result = CliRunner().invoke(app, ["asof", "fraud", "--entity", LATE, "--entity", SEED, "--valid-at", T1.isoformat(),
                                          "--known-at", known["late2"].isoformat(), "--engine", engine,
                                          "-o", str(written[engine])])
        assert result.exit_code == 0, result.output
    assert pq.read_table(written["spark"]).to_pylist() == pq.read_table(written["duckdb"]).to_pylist()
    assert [row["value"] for row in pq.read_table(written["spark"]).to_pylist()] == ["positive", "negative"]


def test_a_session_of_its_own_reads_the_tables_through_icebergs_catalog(world, tmp_path):
    """Spark's Iceberg runtime and the JDBC catalog over the warehouse's catalog database: the same
    rows as DuckDB reads, the same answers, and a pinned snapshot read by id."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    import pyarrow.parquet as pq

    warehouse, known = world
    spine = hard_spine(warehouse, "recorded_at")
    pq.write_table(spine, tmp_path / "spine.parquet")
    events = warehouse.table("events")
    first = min(events.snapshots(), key=lambda s: s.sequence_number).snapshot_id
    (tmp_path / "pinned.json").write_text(json.dumps({"events": first, "label_versions": warehouse.current_snapshots()[
        "label_versions"]}))
    done = subprocess.run([sys.executable, "-m", "tests.spark.catalog_process", str(warehouse.root), str(tmp_path)],
                          capture_output=True, text=True, timeout=600, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-4000:]

    connection = warehouse.connect()
    expected_counts = {table: connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                       for table in ("events", "label_versions")}
    assert json.loads((tmp_path / "counts.json").read_text()) == expected_counts
    answer = pq.read_table(tmp_path / "answer.parquet")
    assert answer.to_pylist() == as_of(warehouse, ["fraud", "manual_review"], spine=spine, known_at="ts").to_pylist()
    pinned = warehouse.at(json.loads((tmp_path / "pinned.json").read_text()))
    assert pq.read_table(tmp_path / "pinned.parquet").to_pylist() == as_of(
        pinned, "fraud", spine=spine, known_at="ts").to_pylist()
