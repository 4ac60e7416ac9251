"""Label histories rebuilt from the events archive: the offline twin of the processor.

1. ``state_history`` folds the archived events of an entity type with the processor's
   ``EntityFold`` (the same declaration, the same decoded records): one state row per event, in
   log order (what the processor did) or in business-time order (late events put in their place);
2. ``label_history`` evaluates rules over all those states at once with the processor's
   ``RuleEvaluator`` and keeps, per entity and label, the rows whose value differs from the one
   before: exactly the versions ``labelstore.labels.label_changes`` emits online, with the same
   deterministic ``version_id`` (computed here by DuckDB, vectorized).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Literal

import duckdb
import pyarrow as pa

from labelstore.declarations import EntityDeclaration
from labelstore.fold import EntityFold
from labelstore.labels import VERSION_NAMESPACE
from labelstore.rules.evaluation import RuleEvaluator
from labelstore.rules.model import LabelRule
from labelstore.rules.sandbox import arrow_schema
from labelstore.warehouse import LABEL_VERSIONS_SCHEMA, UTC_MS
from schemas.codec import AvroCodec

Order = Literal["log", "valid"]
# Ties: the log decides (an entity's events share a partition, so its offsets are in log order).
ORDER_BY = {
    "log": 'entity_id, recorded_at, "partition", "offset"',
    "valid": 'entity_id, event_time, recorded_at, "partition", "offset"',
}
EVENT_COLUMNS = pa.schema([
    ("entity_id", pa.string()), ("seq", pa.int64()), ("event_id", pa.string()), ("event_time", UTC_MS),
    ("recorded_at", UTC_MS), ("topic", pa.string()), ("partition", pa.int32()), ("offset", pa.int64()),
])


def state_history(connection: duckdb.DuckDBPyConnection, declaration: EntityDeclaration, *, order: Order = "log",
                  known_at: datetime | None = None, entity_ids: Sequence[str] | None = None) -> pa.Table:
    """One row per archived event of the entity type: where it sits, and the entity's state after it.

    ``known_at`` keeps only the events recorded by then (inclusive); ``seq`` numbers each
    entity's rows in the chosen order.
    """
    where, parameters = ["entity_type = ?"], [declaration.entity_type]
    if known_at is not None:
        where.append("recorded_at <= ?")
        parameters.append(known_at)
    if entity_ids is not None:
        where.append("list_contains(?, entity_id)")
        parameters.append(list(entity_ids))
    events = connection.sql(
        f'SELECT entity_id, event_id, event_time, recorded_at, topic, "partition", "offset", avro FROM events '
        f'WHERE {" AND ".join(where)} ORDER BY {ORDER_BY[order]}', params=parameters).to_arrow_table()
    fold, codec = EntityFold(declaration), AvroCodec()
    states, seqs = [], []
    previous_entity, state, seq = None, None, 0
    for entity_id, avro in zip(events.column("entity_id").to_pylist(), events.column("avro").to_pylist(), strict=True):
        if entity_id != previous_entity:
            previous_entity, state, seq = entity_id, None, 0
        decoded = codec.decode(avro)
        state = fold.apply(state, decoded.event_type, decoded.record)
        states.append(state)
        seqs.append(seq)
        seq += 1
    schema = arrow_schema(declaration)
    columns = [pa.array([s[name] for s in states], type=field.type) for name, field in zip(schema.names, schema, strict=True)]
    located = events.drop_columns(["avro"]).append_column("seq", pa.array(seqs, pa.int64()))
    located = located.select(EVENT_COLUMNS.names).cast(EVENT_COLUMNS)
    for name, column in zip(schema.names, columns, strict=True):
        located = located.append_column(name, column)
    return located


def label_history(states: pa.Table, entity_type: str, rules: Sequence[LabelRule], declaration: EntityDeclaration) -> pa.Table:
    """The label versions the rules give over a state history: ``LABEL_VERSIONS_SCHEMA`` plus ``label``."""
    evaluator = RuleEvaluator(declaration, rules, threads=2)
    values = evaluator.evaluate_table(states.select(evaluator.fields)) if rules else pa.table({})
    located = states.select(EVENT_COLUMNS.names)
    connection = duckdb.connect()
    connection.execute("SET enable_progress_bar = false")
    parts = []
    for rule in rules:
        connection.register("located", located.append_column("value", values.column(rule.name).cast(pa.string())))
        parts.append(connection.sql(_CHANGES_SQL, params={
            "namespace": VERSION_NAMESPACE.hex, "entity_type": entity_type, "label": rule.name,
            "rule_version": rule.version,
        }).to_arrow_table())
        connection.unregister("located")
    schema = LABEL_VERSIONS_SCHEMA.append(pa.field("label", pa.string()))
    if not parts:
        return schema.empty_table()
    return pa.concat_tables([part.select(schema.names).cast(schema) for part in parts])


# value_text of booleans is 'true'/'false' and of numbers their JSON text: CAST(... AS VARCHAR)
# writes the same. The version id is uuid5(namespace, name), as ``labelstore.labels.version_id``.
_CHANGES_SQL = """
WITH compared AS (
    SELECT *, lag(value) OVER (PARTITION BY entity_id ORDER BY seq) AS previous_value
    FROM located
), changed AS (
    SELECT *, sha1(from_hex($namespace) || encode(concat_ws(chr(31), $entity_type, entity_id, $label,
                                                            CAST($rule_version AS VARCHAR), event_id))) AS h
    FROM compared
    WHERE value IS DISTINCT FROM previous_value
)
SELECT
    concat(h[1:8], '-', h[9:12], '-5', h[14:16], '-',
           printf('%x', (CAST('0x' || h[17] AS INTEGER) & 3) | 8), h[18:20], '-', h[21:32]) AS version_id,
    $entity_type AS entity_type, entity_id, $rule_version AS rule_version, value, previous_value,
    event_time, recorded_at, event_id, topic AS cause_topic, "partition" AS cause_partition,
    "offset" AS cause_offset, $label AS label
FROM changed
ORDER BY entity_id, seq
"""
