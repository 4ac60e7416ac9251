"""Compare two versions of a label rule over the same state history.

Both versions are evaluated on every state of every entity (the stored state history, in log
order, see ``offline.backfill``), so the comparison is row for row: an entity's label histories
differ when the versions give a different value on any of its states, and they first diverge at
the earliest such state (its ``recorded_at``). Final labels are each entity's value at its last
state in the range.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from labelstore.rules.evaluation import RuleEvaluator
from labelstore.rules.model import LabelRule
from labelstore.warehouse import Warehouse
from labelstore.offline.asof import QueryError
from labelstore.offline.backfill import evaluate, load_states


@dataclass(frozen=True)
class EntityDiff:
    entity_id: str
    first_divergence: datetime
    history_a: list[tuple[datetime, str | None]]  # (recorded_at, value) of each version
    history_b: list[tuple[datetime, str | None]]


@dataclass
class DiffReport:
    name: str
    version_a: int
    version_b: int
    entities: int = 0
    differing_entities: int = 0
    confusion: dict[tuple[str | None, str | None], int] = field(default_factory=dict)  # final (a, b) -> entities
    first_divergence: datetime | None = None
    divergences_by_day: list[tuple[str, int]] = field(default_factory=list)
    samples: list[EntityDiff] = field(default_factory=list)


def diff(warehouse: Warehouse, rule_a: LabelRule, rule_b: LabelRule, *, start: datetime | None = None,
         end: datetime | None = None, sample: int = 5) -> DiffReport:
    if (rule_a.name, rule_a.entity_type) != (rule_b.name, rule_b.entity_type):
        raise QueryError(f"compare two versions of one label, not {rule_a.key} and {rule_b.key}")
    declaration = warehouse.repository.declarations[rule_a.entity_type]
    states = load_states(warehouse, declaration)
    if end is not None:
        states = states.filter(pc.less_equal(states["recorded_at"], pa.scalar(end, states.schema.field("recorded_at").type)))
    values = {}
    for key, rule in (("a", rule_a), ("b", rule_b)):
        evaluator = RuleEvaluator(declaration, [rule], threads=2)
        values[key] = evaluator.evaluate_table(states.select(evaluator.fields)).column(0).cast(pa.string())
    rows = pa.table({"entity_id": states["entity_id"], "seq": states["seq"], "recorded_at": states["recorded_at"],
                     "a": values["a"], "b": values["b"]})
    report = DiffReport(rule_a.name, rule_a.version, rule_b.version)
    connection = duckdb.connect()
    connection.execute("SET enable_progress_bar = false")
    connection.execute("SET TimeZone = 'UTC'")
    connection.register("rows", rows)
    in_range = "recorded_at >= $start" if start is not None else "true"
    parameters = {"start": start} if start is not None else {}
    final = connection.sql("""
        SELECT a, b, count(*) AS entities FROM (
            SELECT arg_max(a, seq) AS a, arg_max(b, seq) AS b FROM rows GROUP BY entity_id)
        GROUP BY ALL""").fetchall()
    report.confusion = {(a, b): n for a, b, n in final}
    report.entities = sum(report.confusion.values())
    connection.execute(f"""
        CREATE TEMP TABLE diverged AS
        SELECT entity_id, min(recorded_at) AS first_divergence FROM rows
        WHERE a IS DISTINCT FROM b AND {in_range} GROUP BY entity_id""", parameters)
    report.differing_entities, report.first_divergence = connection.sql(
        "SELECT count(*), min(first_divergence) FROM diverged").fetchall()[0]
    report.divergences_by_day = [(str(day), n) for day, n in connection.sql(
        "SELECT CAST(first_divergence AS DATE) AS day, count(*) FROM diverged GROUP BY ALL ORDER BY day").fetchall()]
    chosen = [row[0] for row in connection.sql(
        f"SELECT entity_id FROM diverged ORDER BY first_divergence, entity_id LIMIT {int(sample)}").fetchall()]
    if chosen:
        subset = states.filter(pc.is_in(states["entity_id"], pa.array(chosen)))
        histories = {key: evaluate(subset, rule, declaration).to_pylist() for key, rule in (("a", rule_a), ("b", rule_b))}
        firsts = dict(connection.sql("SELECT entity_id, first_divergence FROM diverged").fetchall())
        for entity_id in chosen:
            report.samples.append(EntityDiff(entity_id, firsts[entity_id], *(
                [(v["recorded_at"], v["value"]) for v in histories[key] if v["entity_id"] == entity_id] for key in "ab")))
    return report


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
