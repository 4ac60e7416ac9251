"""Point-in-time label queries on both time axes, for one entity, all entities, or a spine.

- ``known_at=T``: the label as the system knew it at T: the latest version the processor emitted
  whose causing event was recorded (broker log-append time) at or before T. Exactly what a
  real-time consumer saw; never leaks what was learned later.
- ``valid_at=T``: the label the entity had at business time T, given every event known now: the
  archived events are re-folded in ``event_time`` order (late events in their place) and the
  rules re-evaluated, then the last version with ``event_time`` at or before T wins.
- both: valid at T1 as known at T2 (only events recorded by T2 are re-folded).

Boundaries are inclusive (``<=``). Versions at the same instant are ordered by the log (recorded_at,
partition, offset): the last one wins. An entity without a version at that time gets NULL.

For a spine (a table with an entity column and a timestamp column, the rows of a training set),
pass the name of its timestamp column as ``known_at`` or ``valid_at``: every row is answered at
its own time. Rows, their order and their duplicates are kept.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc

from labelstore.errors import LabelstoreError
from labelstore.rules.model import LabelRule
from labelstore.warehouse import Warehouse
from labelstore.offline.history import label_history, state_history

Output = Literal["arrow", "pandas", "polars"]
Maturity = Literal["all", "mature", "flag"]
Engine = Literal["duckdb", "spark"]
TimeArg = datetime | str | None
SQL_TYPES = {"string": "VARCHAR", "boolean": "BOOLEAN", "long": "BIGINT", "double": "DOUBLE"}


class QueryError(LabelstoreError):
    """An as-of query that cannot be answered as asked; the message says why."""


@dataclass(frozen=True)
class _Axis:
    """Where a label's versions come from and how they are ordered in time."""

    relation: str  # a view over label versions with a ``label`` column
    time: str  # the column compared with the query time
    ties: str  # ORDER BY tail that puts versions at the same time in log order


KNOWN = _Axis("labels", "recorded_at", "cause_offset")
VALID = _Axis("valid_versions", "event_time", "recorded_at, cause_partition, cause_offset")


def as_of(
    warehouse: Warehouse,
    labels: str | Sequence[str],
    *,
    known_at: TimeArg = None,
    valid_at: TimeArg = None,
    entity_ids: Sequence[str] | None = None,
    spine: Any = None,
    entity_column: str = "entity_id",
    maturity: Maturity = "all",
    rules: Sequence[LabelRule] | None = None,
    rule_versions: Mapping[str, int] | None = None,
    output: Output = "arrow",
    engine: Engine = "duckdb",
) -> Any:
    """Labels at a point in time. Without ``spine``: one row per entity and label (a snapshot, or
    the given ``entity_ids``, which get a row even without a version). With ``spine``: the spine
    with one column per label (and ``<label>_mature`` with ``maturity="flag"``).

    ``maturity``: ``all`` returns every label, ``mature`` only labels past their maturity window
    at the query time (others become NULL in a spine, absent in a snapshot), ``flag`` marks them.

    ``rule_versions`` (e.g. ``{"fraud": 2}``) asks for other rule versions than the built-in ones
    (found in ``rules`` or the rule catalog): the valid axis evaluates them, the known axis reads
    their backfilled history (``labelstore rules backfill``) instead of what the processor emitted.

    ``engine``: ``duckdb`` (embedded, the default) or ``spark`` (``labelstore.offline.spark``: the
    same answers, computed on the Spark master of ``SparkSettings``).
    """
    if engine == "spark":
        from labelstore.offline.spark.asof import as_of_spark

        return as_of_spark(warehouse, labels, known_at=known_at, valid_at=valid_at, entity_ids=entity_ids, spine=spine,
                           entity_column=entity_column, maturity=maturity, rules=rules, rule_versions=rule_versions,
                           output=output)
    if engine != "duckdb":
        raise QueryError(f"engine must be duckdb or spark, not {engine!r}")
    names = [labels] if isinstance(labels, str) else list(labels)
    chosen = _rules_for(names, warehouse.repository.initial_rules() if rules is None else rules, rule_versions or {})
    entity_type = _one_entity_type(chosen)
    connection = warehouse.connect()
    try:
        _use_backfills(connection, warehouse, [r for r in chosen if r.name in (rule_versions or {})])
        if spine is not None:
            table = _spine_join(connection, warehouse, chosen, entity_type, _as_arrow(spine), entity_column, known_at, valid_at, maturity)
        else:
            table = _point(connection, warehouse, chosen, entity_type, entity_ids, instant(known_at, "known_at"),
                           instant(valid_at, "valid_at"), maturity)
    finally:
        connection.close()
    return convert(table, output)


def convert(table: pa.Table, output: Output) -> Any:
    if output == "arrow":
        return table
    if output == "pandas":
        return table.to_pandas()
    if output == "polars":
        import polars

        return polars.from_arrow(table)
    raise QueryError(f"output must be arrow, pandas or polars, not {output!r}")


def _point(connection, warehouse: Warehouse, rules, entity_type, entity_ids, known_at, valid_at, maturity) -> pa.Table:
    axis = _prepare_axis(connection, warehouse, rules, entity_type, known_at, valid_at)
    at = valid_at if valid_at is not None else known_at
    if maturity != "all":
        _first_seen(connection, entity_type)
    parts = []
    for rule in rules:
        chosen = f"""
            SELECT * FROM {axis.relation}
            WHERE label = $label AND entity_type = $entity_type {'AND ' + axis.time + ' <= $at' if at is not None else ''}
            QUALIFY row_number() OVER (PARTITION BY entity_id ORDER BY {axis.time} DESC, {_desc(axis.ties)}) = 1"""
        if entity_ids is not None:
            connection.register("wanted", pa.table({"entity_id": pa.array(list(entity_ids), pa.string())}))
            source = f"wanted w LEFT JOIN ({chosen}) v USING (entity_id)"
        else:
            source = f"({chosen}) v"
        mature = _mature_sql(rule, "$at" if at is not None else "now()")
        keep = f"WHERE value IS NULL OR {mature}" if maturity == "mature" else ""
        flag = f", {mature} AS mature" if maturity == "flag" else ""
        parameters = {"label": rule.name, "entity_type": entity_type}
        if at is not None:
            parameters["at"] = at
        parts.append(connection.sql(f"""
            SELECT $entity_type AS entity_type, entity_id, $label AS label,
                   CAST(value AS {SQL_TYPES[rule.value_type]}) AS value, rule_version, version_id,
                   event_time, recorded_at, event_id{flag}
            FROM {source} {'LEFT JOIN first_seen f USING (entity_id)' if maturity != 'all' else ''} {keep}
            ORDER BY entity_id""", params=parameters).to_arrow_table())
    return pa.concat_tables(parts)


def _spine_join(connection, warehouse: Warehouse, rules, entity_type, spine: pa.Table, entity_column, known_at,
                valid_at, maturity) -> pa.Table:
    column, fixed = _spine_time(spine, known_at, valid_at)
    if entity_column not in spine.column_names:
        raise QueryError(f"the spine has no column {entity_column!r} (columns: {', '.join(spine.column_names)})")
    if column == known_at:
        axis = _prepare_axis(connection, warehouse, rules, entity_type, None, None)
    else:  # valid time from the spine, optionally as known at a fixed time
        axis = _prepare_axis(connection, warehouse, rules, entity_type, instant(fixed, "known_at"), datetime.now(UTC))
    # Only the key columns go through DuckDB, numbered; the answers come back in spine order (a
    # sort of numbers and labels only) and are added to the spine's own columns as they are.
    ordinal = "__labelstore_row"
    numbers = pc.cumulative_sum(pa.repeat(pa.scalar(1, pa.int64()), spine.num_rows))
    connection.register("spine", pa.table({entity_column: spine.column(entity_column), column: spine.column(column),
                                           ordinal: numbers}))
    selected, joins, names = [], [], []
    if maturity != "all":
        _first_seen(connection, entity_type)
        joins.append(f'LEFT JOIN first_seen f ON f.entity_id = s."{entity_column}"')
    for index, rule in enumerate(rules):
        alias = f"v{index}"
        parameters = {"label": rule.name, "entity_type": entity_type}
        joins.append(_asof_join(connection, axis, alias, f's."{entity_column}"', f's."{column}"', parameters))
        value = f"CAST({alias}.value AS {SQL_TYPES[rule.value_type]})"
        mature = _mature_sql(rule, f's."{column}"')
        if maturity == "mature":
            value = f"CASE WHEN {mature} THEN {value} END"
        selected.append(f"{value} AS v{index}")
        names.append(rule.name)
        if maturity == "flag":
            selected.append(f"{mature} AS m{index}")
            names.append(f"{rule.name}_mature")
    answers = connection.sql(f"SELECT {', '.join(selected)} FROM spine s {' '.join(joins)} ORDER BY s.{ordinal}")
    for name, answer in zip(names, answers.to_arrow_table().columns, strict=True):
        spine = spine.append_column(name, answer)
    return spine


def _asof_join(connection, axis: _Axis, alias: str, entity: str, at: str, parameters: dict[str, str]) -> str:
    """An ``ASOF LEFT JOIN`` clause giving each spine row the version of the label in force at ``at``.

    ASOF JOIN picks any of several rows at the same time, so the log order must decide ties.
    Known axis: the inequality is on (recorded_at, cause_offset), the spine side being (at, the
    largest offset), so the last version at or before ``at`` in log order is found by the join
    itself, without ranking 20M versions first. It reads ``label_versions`` with the label as a
    partition filter rather than the ``labels`` view: the view's only change, one row per
    ``version_id``, changes nothing here, as copies of a version share entity, recorded_at,
    offset and value. Valid axis: ties are removed first, keeping the last in log order.
    """
    if axis is KNOWN:
        return f"""
            ASOF LEFT JOIN (
                SELECT entity_id, {{'at': recorded_at, 'offset': coalesce(cause_offset, -1)}} AS at, value
                FROM label_versions
                WHERE label = '{_literal(parameters["label"])}' AND entity_type = '{_literal(parameters["entity_type"])}'
                  AND recorded_at IS NOT NULL
            ) {alias} ON {entity} = {alias}.entity_id
                AND CASE WHEN {at} IS NOT NULL THEN {{'at': CAST({at} AS TIMESTAMPTZ), 'offset': {2**63 - 1}}} END >= {alias}.at"""
    connection.execute(f"""
        CREATE TEMP TABLE {alias} AS
        SELECT entity_id, {axis.time} AS at, value FROM {axis.relation}
        WHERE label = $label AND entity_type = $entity_type
        QUALIFY row_number() OVER (PARTITION BY entity_id, {axis.time} ORDER BY {_desc(axis.ties)}) = 1
        """, parameters)
    return f"ASOF LEFT JOIN {alias} ON {entity} = {alias}.entity_id AND {at} >= {alias}.at"


def _literal(text: str) -> str:
    return text.replace("'", "''")


def _prepare_axis(connection, warehouse: Warehouse, rules, entity_type, known_at: datetime | None,
                  valid_at: datetime | None) -> _Axis:
    """The known axis reads what the processor emitted; the valid axis re-folds the archive."""
    if valid_at is None:
        return KNOWN
    declaration = warehouse.repository.declarations[entity_type]
    states = state_history(connection, declaration, order="valid", known_at=known_at, codec=warehouse.repository.codec)
    connection.register("valid_versions", label_history(states, entity_type, rules, declaration))
    return VALID


def _mature_sql(rule: LabelRule, at: str) -> str:
    """Mature: the maturity window, counted from the entity's first event, has passed at ``at``.
    Needs ``first_seen f`` joined (see ``_first_seen``)."""
    if rule.maturity_days is None:
        return "true"
    return f"coalesce(f.first_ms + {int(rule.maturity_days * 86_400_000)} <= epoch_ms({at}), false)"


def _first_seen(connection, entity_type: str) -> None:
    """Each entity's earliest event_time among all archived events (epoch ms)."""
    connection.execute("""
        CREATE OR REPLACE TEMP TABLE first_seen AS
        SELECT entity_id, epoch_ms(min(event_time)) AS first_ms FROM events WHERE entity_type = ? GROUP BY entity_id
        """, [entity_type])


def _spine_time(spine: pa.Table, known_at: TimeArg, valid_at: TimeArg) -> tuple[str, TimeArg]:
    columns = [a for a in (known_at, valid_at) if isinstance(a, str)]
    if len(columns) != 1:
        raise QueryError("a spine query needs the name of the spine's timestamp column as known_at= or valid_at= "
                         "(the other may be a fixed time)")
    column = columns[0]
    if column not in spine.column_names:
        raise QueryError(f"the spine has no column {column!r} (columns: {', '.join(spine.column_names)})")
    if not pa.types.is_timestamp(spine.schema.field(column).type):
        raise QueryError(f"spine column {column!r} must hold timestamps, not {spine.schema.field(column).type}")
    if column == known_at and valid_at is not None:
        raise QueryError("valid_at at a fixed time with known_at from the spine is not supported: "
                         "ask valid_at from the spine with a fixed known_at instead")
    return column, known_at if column == valid_at else None


def instant(value: TimeArg, name: str) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise QueryError(f"{name}={value!r} is not an ISO 8601 time (e.g. 2026-03-01T12:00:00Z)") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _rules_for(names: Sequence[str], rules: Sequence[LabelRule], versions: Mapping[str, int]) -> list[LabelRule]:
    available = list(rules)
    by_name = {rule.name: rule for rule in available if rule.name not in versions}
    by_name |= {r.name: r for r in available if versions.get(r.name) == r.version}
    missing = [name for name in versions if name in names and by_name.get(name, None) is None]
    if missing:
        from labelstore.catalog.store import RuleCatalog
        from labelstore.settings import Settings

        catalog = RuleCatalog(Settings().rules.catalog_url)
        by_name |= {name: catalog.get(name, versions[name]).rule for name in missing}
    unknown = [name for name in names if name not in by_name]
    if unknown or not names:
        raise QueryError(f"unknown label {', '.join(map(repr, unknown)) or '(none given)'}; "
                         f"known labels: {', '.join(sorted(by_name))}")
    return [by_name[name] for name in names]


def _use_backfills(connection, warehouse: Warehouse, rules: Sequence[LabelRule]) -> None:
    """On the known axis, these rule versions' labels come from their backfilled histories."""
    if not rules:
        return
    from labelstore.offline.backfill import backfilled

    sources = []
    for rule in rules:
        path = backfilled(warehouse, rule.name, rule.version)
        if path is None:
            raise QueryError(f"{rule.key} has no backfilled history yet: "
                             f"run `labelstore rules backfill {rule.name} --version {rule.version}`")
        sources.append(f"SELECT *, '{rule.name}' AS label, NULL::VARCHAR AS date "
                       f"FROM read_parquet('{path.as_posix()}', hive_partitioning = false)")
    others = ", ".join(f"'{rule.name}'" for rule in rules)
    connection.execute(f"""
        CREATE OR REPLACE VIEW label_versions AS
        SELECT * FROM {warehouse.relation_sql('label_versions')} WHERE label NOT IN ({others})
        UNION ALL BY NAME {' UNION ALL BY NAME '.join(sources)}""")


def _one_entity_type(rules: Sequence[LabelRule]) -> str:
    types = {rule.entity_type for rule in rules}
    if len(types) != 1:
        raise QueryError(f"labels of one entity type at a time, got {', '.join(sorted(types))}")
    return types.pop()


def _as_arrow(spine: Any) -> pa.Table:
    if isinstance(spine, pa.Table):
        return spine
    if hasattr(spine, "to_arrow"):  # polars
        return spine.to_arrow()
    return pa.Table.from_pandas(spine, preserve_index=False)


def _desc(columns: str) -> str:
    return ", ".join(f"{column.strip()} DESC" for column in columns.split(","))

