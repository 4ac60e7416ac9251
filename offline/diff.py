"""Compare two versions of a label rule over the same state history, on either time axis.

Both versions are evaluated on every state of every entity, so the comparison is row for row: an
entity's label histories differ when the versions give a different value on any of its states,
and they first diverge at the earliest such state. The axis decides the history and its clock:

- ``known``: the stored state history in log order (see ``offline.backfill``), divergences at
  ``recorded_at``;
- ``valid``: the states re-folded in business-time order (late events in their place),
  divergences at ``event_time``. Events published in one burst have every ``recorded_at``
  within seconds of each other; only business time spreads their divergences out.

Final labels are each entity's value at its last state in the range.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from labelstore.declarations import EntityDeclaration
from labelstore.rules.evaluation import RuleEvaluator
from labelstore.rules.model import LabelRule
from labelstore.warehouse import Warehouse
from labelstore.offline.asof import QueryError
from labelstore.offline.backfill import evaluate, load_states
from labelstore.offline.history import state_history

AXES = {"known": "recorded_at", "valid": "event_time"}  # axis -> the clock of its divergences


@dataclass(frozen=True)
class EntityDiff:
    entity_id: str
    first_divergence: datetime
    history_a: list[tuple[datetime, str | None]]  # (time on the axis's clock, value) of each version
    history_b: list[tuple[datetime, str | None]]


@dataclass(frozen=True)
class DifferingEntity:
    entity_id: str
    first_divergence: datetime
    final_a: str | None
    final_b: str | None


@dataclass
class DiffReport:
    name: str
    version_a: int
    version_b: int
    axis: str = "known"
    entities: int = 0
    differing_entities: int = 0
    confusion: dict[tuple[str | None, str | None], int] = field(default_factory=dict)  # final (a, b) -> entities
    first_divergence: datetime | None = None
    divergences_by_day: list[tuple[str, int]] = field(default_factory=list)
    differing: list[DifferingEntity] = field(default_factory=list)  # the first ``listed``, by first divergence
    samples: list[EntityDiff] = field(default_factory=list)

    @property
    def clock(self) -> str:
        return AXES[self.axis]


def history_states(warehouse: Warehouse, declaration: EntityDeclaration, axis: str) -> pa.Table:
    """The entity type's state history on the axis: stored in log order, or re-folded by business time."""
    check_axis(axis)
    if axis == "known":
        return load_states(warehouse, declaration)
    connection = warehouse.connect()
    try:
        return state_history(connection, declaration, order="valid", codec=warehouse.repository.codec)
    finally:
        connection.close()


def check_axis(axis: str) -> str:
    if axis not in AXES:
        raise QueryError(f"unknown time axis {axis!r}: use 'valid' (business time) or 'known' (when recorded)")
    return axis


def diff(warehouse: Warehouse, rule_a: LabelRule, rule_b: LabelRule, *, axis: str = "known",
         start: datetime | None = None, end: datetime | None = None, sample: int = 5, listed: int = 100,
         states: pa.Table | None = None) -> DiffReport:
    """``states``: the axis's state history when the caller has it already (``history_states``)."""
    check_axis(axis)
    if (rule_a.name, rule_a.entity_type) != (rule_b.name, rule_b.entity_type):
        raise QueryError(f"compare two versions of one label, not {rule_a.key} and {rule_b.key}")
    declaration = warehouse.repository.declarations[rule_a.entity_type]
    states = history_states(warehouse, declaration, axis) if states is None else states
    clock = AXES[axis]
    if end is not None:
        states = states.filter(pc.less_equal(states[clock], pa.scalar(end, states.schema.field(clock).type)))
    values = {}
    for key, rule in (("a", rule_a), ("b", rule_b)):
        evaluator = RuleEvaluator(declaration, [rule], threads=2)
        values[key] = evaluator.evaluate_table(states.select(evaluator.fields)).column(0).cast(pa.string())
    rows = pa.table({"entity_id": states["entity_id"], "seq": states["seq"], "at": states[clock],
                     "a": values["a"], "b": values["b"]})
    report = DiffReport(rule_a.name, rule_a.version, rule_b.version, axis)
    connection = duckdb.connect()
    try:
        connection.execute("SET enable_progress_bar = false")
        connection.execute("SET TimeZone = 'UTC'")
        connection.register("rows", rows)
        _compare(connection, report, start, listed)
    finally:
        connection.close()
    _sample(report, states, rule_a, rule_b, declaration, sample)
    return report


def _compare(connection: duckdb.DuckDBPyConnection, report: DiffReport, start: datetime | None, listed: int) -> None:
    connection.execute("""
        CREATE TEMP TABLE finals AS
        SELECT entity_id, arg_max(a, seq) AS a, arg_max(b, seq) AS b FROM rows GROUP BY entity_id""")
    report.confusion = {(a, b): n for a, b, n in connection.sql(
        "SELECT a, b, count(*) FROM finals GROUP BY ALL ORDER BY a, b").fetchall()}
    report.entities = sum(report.confusion.values())
    in_range = '"at" >= $start' if start is not None else "true"
    connection.execute(f"""
        CREATE TEMP TABLE diverged AS
        SELECT entity_id, min("at") AS first_divergence FROM rows
        WHERE a IS DISTINCT FROM b AND {in_range} GROUP BY entity_id""", {"start": start} if start is not None else {})
    report.differing_entities, report.first_divergence = connection.sql(
        "SELECT count(*), min(first_divergence) FROM diverged").fetchall()[0]
    report.divergences_by_day = [(str(day), n) for day, n in connection.sql(
        "SELECT CAST(first_divergence AS DATE) AS day, count(*) FROM diverged GROUP BY ALL ORDER BY day").fetchall()]
    report.differing = [DifferingEntity(*row) for row in connection.sql(f"""
        SELECT d.entity_id, d.first_divergence, f.a, f.b FROM diverged d JOIN finals f USING (entity_id)
        ORDER BY d.first_divergence, d.entity_id LIMIT {int(listed)}""").fetchall()]


def _sample(report: DiffReport, states: pa.Table, rule_a: LabelRule, rule_b: LabelRule,
            declaration: EntityDeclaration, sample: int) -> None:
    """Both label histories of the first ``sample`` differing entities."""
    chosen = report.differing[:sample]
    if not chosen:
        return
    subset = states.filter(pc.is_in(states["entity_id"], pa.array([entity.entity_id for entity in chosen])))
    histories = {key: evaluate(subset, rule, declaration).to_pylist() for key, rule in (("a", rule_a), ("b", rule_b))}
    for entity in chosen:
        report.samples.append(EntityDiff(entity.entity_id, entity.first_divergence, *(
            [(v[report.clock], v["value"]) for v in histories[key] if v["entity_id"] == entity.entity_id]
            for key in "ab")))


def plot(report: DiffReport, path: Path) -> Path:
    """Confusion matrix of final labels, and first divergences per day."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = sorted({v for pair in report.confusion for v in pair}, key=lambda v: (v is None, str(v)))
    matrix = [[report.confusion.get((a, b), 0) for b in values] for a in values]
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    left.imshow(matrix, cmap="Blues")
    names = [str(v) for v in values]
    left.set_xticks(range(len(values)), names)
    left.set_yticks(range(len(values)), names)
    left.set_xlabel(f"v{report.version_b}")
    left.set_ylabel(f"v{report.version_a}")
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            left.text(j, i, f"{count:,}", ha="center", va="center")
    left.set_title("final labels (entities)", fontsize=9)
    if report.divergences_by_day:
        days, counts = zip(*report.divergences_by_day, strict=True)
        right.bar(range(len(days)), counts)
        step = max(1, len(days) // 8)
        right.set_xticks(range(0, len(days), step), days[::step], rotation=30, fontsize=7)
    right.set_title(f"first divergence per day ({report.differing_entities:,} entities differ)", fontsize=9)
    figure.suptitle(f"{report.name}: v{report.version_a} vs v{report.version_b}")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
