"""Retroactive rules: evaluate any rule version over the whole state history, and keep the result.

The state history (every state of every entity, in log order) is folded once from the events
archive and kept as ``states/entity_type=<type>/states.parquet``, rebuilt when the archive has
grown. A backfill evaluates one rule version over it, vectorized (the processor's
``RuleEvaluator``, then ``label_history``'s change detection), and stores the label history as
``backfills/label=<name>/rule_version=<v>/versions.parquet``, in the layout of ``label_versions``:
as-of queries can then be asked for that version.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from uuid import uuid4

import pyarrow as pa
import pyarrow.parquet as pq

from labelstore.declarations import EntityDeclaration
from labelstore.rules.model import LabelRule
from labelstore.warehouse import Warehouse
from labelstore.offline.history import label_history, state_history

Progress = Callable[[str, float], None]  # (step, fraction done)


@dataclass(frozen=True)
class BackfillResult:
    rule: LabelRule
    state_rows: int
    versions: int
    seconds: float
    path: Path


def states_path(warehouse: Warehouse, entity_type: str) -> Path:
    return warehouse.root / "states" / f"entity_type={entity_type}" / "states.parquet"


def backfill_path(warehouse: Warehouse, name: str, version: int) -> Path:
    return warehouse.root / "backfills" / f"label={name}" / f"rule_version={version}" / "versions.parquet"


def load_states(warehouse: Warehouse, declaration: EntityDeclaration, progress: Progress | None = None) -> pa.Table:
    """The entity type's state history, folded again only if the archive changed since last time."""
    path = states_path(warehouse, declaration.entity_type)
    # The events table only grows: its identity and record count say whether it changed.
    table = warehouse.table("events")
    snapshot = table.current_snapshot() if table is not None else None
    built_from = {"table": str(table.metadata.table_uuid) if table is not None else None,
                  "records": int(snapshot.summary.get("total-records", 0)) if snapshot is not None else 0}
    marker = path.with_suffix(".json")
    if path.exists() and marker.exists() and json.loads(marker.read_text()) == built_from:
        return pq.read_table(path)
    if progress:
        progress(f"folding the {declaration.entity_type} events archive", 0.0)
    connection = warehouse.connect()
    try:
        states = state_history(connection, declaration, order="log", codec=warehouse.repository.codec)
    finally:
        connection.close()
    _write_atomically(states, path)
    marker.write_text(json.dumps(built_from))
    return states


def backfill(warehouse: Warehouse, rule: LabelRule, *, progress: Progress | None = None,
             engine: str = "duckdb") -> BackfillResult:
    """``engine``: ``duckdb`` evaluates the rule as the processor does; ``spark`` translates its SQL
    and evaluates it on Spark (``labelstore.offline.spark.backfill``), writing the same file."""
    if engine == "spark":
        from labelstore.offline.spark.backfill import backfill_spark

        return backfill_spark(warehouse, rule, progress=progress)
    if engine != "duckdb":
        from labelstore.errors import LabelstoreError

        raise LabelstoreError(f"engine must be duckdb or spark, not {engine!r}")
    declaration = warehouse.repository.declarations[rule.entity_type]
    states = load_states(warehouse, declaration, progress)
    if progress:
        progress(f"evaluating {rule.key} over {states.num_rows:,} states", 0.5)
    started = time.perf_counter()
    history = evaluate(states, rule, declaration)
    path = backfill_path(warehouse, rule.name, rule.version)
    _write_atomically(history.drop_columns(["label"]), path)
    seconds = time.perf_counter() - started
    if progress:
        progress("done", 1.0)
    return BackfillResult(rule, states.num_rows, history.num_rows, seconds, path)


def evaluate(states: pa.Table, rule: LabelRule, declaration: EntityDeclaration) -> pa.Table:
    """One rule version's label history over a state history (no files touched)."""
    return label_history(states, rule.entity_type, [rule], declaration)


def backfilled(warehouse: Warehouse, name: str, version: int) -> Path | None:
    path = backfill_path(warehouse, name, version)
    return path if path.exists() else None


def _write_atomically(table: pa.Table, path: Path) -> None:
    # A temporary name of its own per writer: two readers folding the same history at once (the
    # explorer's threads, a notebook) each rename a whole file; with one shared name, the second
    # rename found the first had taken the file away.
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid4().hex}.tmp")
    try:
        pq.write_table(table, temporary, compression="zstd")
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
