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
import pyarrow.compute as pc

from labelstore.collector import paused
from labelstore.declarations import EntityDeclaration
from labelstore.fold import EntityFold
from labelstore.labels import VERSION_NAMESPACE
from labelstore.rules.evaluation import RuleEvaluator
from labelstore.rules.model import LabelRule
from labelstore.rules.sandbox import arrow_schema
from labelstore.warehouse import LABEL_VERSIONS_SCHEMA, UTC_MS
from labelstore.schemas.codec import AvroCodec

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
                  known_at: datetime | None = None, entity_ids: Sequence[str] | None = None,
                  codec: AvroCodec | None = None) -> pa.Table:
    """One row per archived event of the entity type: where it sits, and the entity's state after it.

    ``known_at`` keeps only the events recorded by then (inclusive); ``seq`` numbers each
    entity's rows in the chosen order. ``codec``: the repository's (default: the current one).
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
    fold, codec = EntityFold(declaration), codec or AvroCodec()
    states, seqs = [], []
    previous_entity, state, seq = None, None, 0
    with paused():
        for entity_id, avro in zip(events.column("entity_id").to_pylist(), events.column("avro").to_pylist(),
                                   strict=True):
            if entity_id != previous_entity:
                previous_entity, state, seq = entity_id, None, 0
            decoded = codec.decode(avro, lean=True)  # as the processor folds them (``labelstore.intake``)
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
    """The label versions the rules give over a state history: ``LABEL_VERSIONS_SCHEMA`` plus ``label``.

    ``states`` must be ordered by entity, then by ``seq``, which starts at 0 for each entity (as
    ``state_history`` returns them).
    """
    schema = LABEL_VERSIONS_SCHEMA.append(pa.field("label", pa.string()))
    if not rules or states.num_rows == 0:
        return schema.empty_table()
    evaluator = RuleEvaluator(declaration, rules, threads=2)
    values = evaluator.evaluate_table(states.select(evaluator.fields))
    located = states.select(EVENT_COLUMNS.names)
    continues = pc.greater(located.column("seq").combine_chunks(), 0)  # not an entity's first state
    connection = duckdb.connect()
    connection.execute("SET enable_progress_bar = false")
    parts = []
    for rule in rules:
        value = values.column(rule.name).combine_chunks().cast(pa.string())
        previous = pc.if_else(continues, _shifted(value), pa.scalar(None, pa.string()))
        # A change: the value differs from the entity's previous one, NULL counting as a value
        # (an abstaining rule emits nothing; a label that becomes NULL emits a version).
        equal = pc.equal(value, previous)
        changed = pc.fill_null(pc.invert(equal), pc.xor(pc.is_null(value), pc.is_null(previous)))
        changes = located.append_column("value", value).append_column("previous_value", previous).filter(changed)
        connection.register("changes", changes.select(["entity_id", "event_id"]))
        ids = connection.sql(_VERSION_ID_SQL, params={
            "namespace": VERSION_NAMESPACE.hex, "entity_type": entity_type, "label": rule.name,
            "rule_version": str(rule.version),
        }).to_arrow_table().column(0)
        connection.unregister("changes")
        rows = changes.num_rows
        parts.append(pa.table({
            "version_id": ids, "entity_type": pa.repeat(pa.scalar(entity_type), rows),
            "entity_id": changes["entity_id"], "rule_version": pa.repeat(pa.scalar(rule.version, pa.int32()), rows),
            "value": changes["value"], "previous_value": changes["previous_value"],
            "event_time": changes["event_time"], "recorded_at": changes["recorded_at"], "event_id": changes["event_id"],
            "cause_topic": changes["topic"], "cause_partition": changes["partition"], "cause_offset": changes["offset"],
            "label": pa.repeat(pa.scalar(rule.name), rows),
        }))
    return pa.concat_tables([part.select(schema.names).cast(schema) for part in parts])


def _shifted(array: pa.Array) -> pa.Array:
    """The array moved down one row: row i holds row i-1's value, row 0 holds NULL."""
    return pa.concat_arrays([pa.nulls(1, array.type), array.slice(0, len(array) - 1)])


# value_text of booleans is 'true'/'false' and of numbers their JSON text: CAST(... AS VARCHAR)
# writes the same (see ``label_history``). The version id is uuid5(namespace, name), as
# ``labelstore.labels.version_id``: SHA-1 of the namespace bytes and the name, version nibble 5,
# variant bits 10 (the 17th hex digit becomes 8, 9, a or b).
_VERSION_ID_SQL = """
WITH hashed AS (
    SELECT sha1(from_hex($namespace) || encode(concat_ws(chr(31), $entity_type, entity_id, $label, $rule_version,
                                                         event_id))) AS h
    FROM changes
)
SELECT concat(substr(h, 1, 8), '-', substr(h, 9, 4), '-5', substr(h, 14, 3), '-',
              substr('89ab89ab89ab89ab', strpos('0123456789abcdef', substr(h, 17, 1)), 1), substr(h, 18, 3), '-',
              substr(h, 21, 12)) AS version_id
FROM hashed
"""
