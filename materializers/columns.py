"""Archive rows of many event records at once: decoded, admitted and written as columns.

``RowMaker.event`` admits and converts one record at a time, about 20 us each, most of the
materializer's time. ``EventColumns`` takes a topic's records of one fetch together: their bodies
are decoded field by field (``labelstore.schemas.columnar``), admitted with the same checks as
``labelstore.intake.admit`` over whole columns, and the payload's JSON is assembled from columns.

It only ever accepts: a record it cannot decode, or that fails any check, is handed back and goes
through ``RowMaker.event`` one by one, which admits or refuses it exactly as before and words the
refusal. So the archive holds the same rows with the same bytes either way
(``tests/materializers/test_columns.py`` compares both paths record for record).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]
from weakref import WeakKeyDictionary

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from labelstore.events.column_checks import ColumnChecks
from labelstore.intake import Admission, event_types_of
from labelstore.schemas.codec import HEADER_SIZE, MAGIC, AvroCodec
from labelstore.schemas.columnar import PADDING, BatchDecoder, Column, string_parts
from labelstore.schemas.compiled import Unsupported
from labelstore.warehouse import EVENTS_SCHEMA
from labelstore.materializers.rows import DAY_MS, Folder, events_folder

_TIME = EVENTS_SCHEMA.field("event_time").type


@dataclass
class Archived:
    """Rows of one archive folder, and the offsets they cover per partition."""

    folder: Folder
    table: pa.Table
    covers: dict[int, tuple[int, int]]


class _Schemas:
    """What a codec's current schemas need here, made once per codec."""

    def __init__(self, codec: AvroCodec) -> None:
        self.checks = ColumnChecks(event_types_of(codec).catalog)
        self.by_fingerprint: dict[int, tuple[str, str, BatchDecoder | None]] = {}
        for schema in codec.schema_set.current.values():
            try:
                decoder = BatchDecoder(codec.parsed_schema(schema.fingerprint))
            except Unsupported:
                decoder = None  # its records go one by one
            self.by_fingerprint[int.from_bytes(schema.fingerprint, "little")] = (
                schema.entity_type, schema.event_type, decoder)


_SCHEMAS: WeakKeyDictionary[AvroCodec, _Schemas] = WeakKeyDictionary()


class EventColumns:
    def __init__(self, admission: Admission) -> None:
        self.admission = admission

    def rows(self, topic: str, entity_type: str, partitions: Sequence[int], offsets: Sequence[int],
             timestamps: Sequence[int], keys: Sequence[bytes | None], values: Sequence[bytes | None],
             ) -> tuple[list[Archived], np.ndarray]:
        """The archive rows of the records admitted here, and the indexes of the others, for
        ``RowMaker.event``."""
        admission = self.admission
        schemas = _SCHEMAS.get(admission.codec)
        if schemas is None:
            schemas = _SCHEMAS[admission.codec] = _Schemas(admission.codec)
        count = len(values)
        buffer, starts, lengths, left = _framed(values, keys, admission.limits.max_event_bytes)
        fingerprints = buffer[starts[:, None] + np.arange(2, HEADER_SIZE)].copy().view("<u8").reshape(-1)

        archived: list[Archived] = []
        timestamps_array = np.asarray(timestamps, dtype=np.int64)
        partitions_array, offsets_array = np.asarray(partitions, dtype=np.int32), np.asarray(offsets, dtype=np.int64)
        value_offsets = np.zeros(count + 1, dtype=np.int64)
        np.cumsum(lengths, out=value_offsets[1:])
        avro = pa.LargeBinaryArray.from_buffers(pa.large_binary(), count, [None, pa.py_buffer(value_offsets),
                                                                          pa.py_buffer(buffer)])
        foldable = admission.foldable(entity_type)
        known = np.zeros(count, dtype=bool)
        for fingerprint in np.unique(fingerprints[~left]).tolist():
            schema_entity, event_type, decoder = schemas.by_fingerprint.get(fingerprint, (None, None, None))
            if decoder is None or schema_entity != entity_type or event_type not in foldable:
                continue  # unknown, unread here, or refused: one by one
            rows = np.flatnonzero((fingerprints == fingerprint) & ~left)
            try:
                accepted, columns = self._admit(schemas, decoder, entity_type, event_type, buffer, starts[rows] + HEADER_SIZE,
                                              starts[rows] + lengths[rows], timestamps_array[rows],
                                              [keys[i] for i in rows.tolist()])
            except Unsupported:
                continue
            rows = rows[accepted]
            known[rows] = True
            table = _with_location(columns, topic, partitions_array[rows], offsets_array[rows], timestamps_array[rows],
                                   avro.take(pa.array(rows)).cast(pa.binary()))
            archived.extend(_by_day(table, entity_type, timestamps_array[rows], partitions_array[rows],
                                    offsets_array[rows]))
        return archived, np.flatnonzero(~known)

    def _admit(self, schemas: _Schemas, decoder: BatchDecoder, entity_type: str, event_type: str,
               buffer: np.ndarray, starts: np.ndarray, ends: np.ndarray, recorded_at: np.ndarray,
               keys: list[bytes]) -> tuple[np.ndarray, dict[str, pa.Array]]:
        # The record's own entity and event type must be its schema's (see ``intake.admit``).
        decoded = decoder.decode(buffer, starts, ends, expected={"entity_type": entity_type, "event_type": event_type})
        fields = decoded.record.fields
        text = {name: fields[name].strings(buffer) for name in ("event_id", "entity_id", "source")}
        refused = decoded.bad.copy()
        refused |= ~_numpy(pc.equal(text["entity_id"].cast(pa.binary()), pa.array(keys, pa.binary())))
        event_time = fields["event_time"].values
        limits = self.admission.limits
        refused |= (event_time < 0) | ((recorded_at >= 0) & (event_time > recorded_at + limits.event_time_max_ahead_ms))
        if self.admission.checks is not None:
            refused |= schemas.checks.failing(event_type, decoded.record, buffer)
        accepted = ~refused
        mask = pa.array(accepted)
        return accepted, {
            "event_id": text["event_id"].filter(mask),
            "entity_id": text["entity_id"].filter(mask),
            "event_type": pa.array([event_type] * int(accepted.sum()), pa.string()),
            "event_time": pa.array(event_time[accepted]).cast(_TIME),
            "source": text["source"].filter(mask),
            "payload": json_text(fields["payload"], buffer, len(accepted)).filter(mask),
        }


def _framed(values: Sequence[bytes | None], keys: Sequence[bytes | None], max_event_bytes: int
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The values laid end to end (with zero padding), where each starts, its length, and which
    records are not for this path: no key or value, too large, or no single-object header."""
    count = len(values)
    left = np.zeros(count, dtype=bool)
    if values.count(None) or keys.count(None) or keys.count(b""):
        left[[index for index, (key, value) in enumerate(zip(keys, values, strict=True))
              if not key or value is None]] = True
        values = [b"" if value is None else value for value in values]
        keys = [key or b"" for key in keys]
    lengths = np.fromiter(map(len, values), dtype=np.int64, count=count)
    left |= lengths + np.fromiter(map(len, keys), dtype=np.int64, count=count) > max_event_bytes
    left |= lengths < HEADER_SIZE
    buffer = np.frombuffer(b"".join([*values, bytes(PADDING + HEADER_SIZE)]), dtype=np.uint8)
    starts = np.zeros(count, dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    left |= (buffer[starts] != MAGIC[0]) | (buffer[starts + 1] != MAGIC[1])
    return buffer, starts, lengths, left


def _with_location(columns: dict[str, pa.Array], topic: str, partitions: np.ndarray, offsets: np.ndarray,
                   recorded_at: np.ndarray, values: pa.Array) -> pa.Table:
    located = {**columns, "recorded_at": pa.array(recorded_at).cast(_TIME),
               "topic": pa.array([topic] * len(values), pa.string()),
               "partition": pa.array(partitions, pa.int32()), "offset": pa.array(offsets, pa.int64()), "avro": values}
    return pa.table({name: located[name] for name in EVENTS_SCHEMA.names}, schema=EVENTS_SCHEMA)


def _by_day(table: pa.Table, entity_type: str, recorded_at: np.ndarray, partitions: np.ndarray,
            offsets: np.ndarray) -> list[Archived]:
    days = recorded_at // DAY_MS
    result = []
    for day in np.unique(days).tolist():
        in_day = days == day
        covers = {}
        for partition in np.unique(partitions[in_day]).tolist():
            covered = offsets[in_day & (partitions == partition)]
            covers[partition] = (int(covered.min()), int(covered.max()))
        result.append(Archived(events_folder(entity_type, day * DAY_MS), table.filter(pa.array(in_day)), covers))
    return result


def json_text(column: Column, buffer: np.ndarray, count: int) -> pa.Array:
    """Each record's value as ``json.dumps(value, sort_keys=True)`` writes it as decoded by fastavro
    (a timestamp as epoch milliseconds, as ``rows.payload_json`` writes it)."""
    kind = column.kind
    if kind == "record":
        names = sorted(column.fields)
        if not names:
            text = pa.array(["{}"] * count, pa.string())
        else:
            parts: list = []
            for position, name in enumerate(names):
                parts += [("{" if position == 0 else ", ") + json.dumps(name) + ": ", json_text(column.fields[name], buffer, count)]
            text = pc.binary_join_element_wise(*parts, "}", "")
    elif kind == "string":
        text = _quoted(column.strings(buffer))
    elif kind == "long":
        text = pa.array(column.values).cast(pa.string())
    elif kind == "double":
        text = pa.array(_float_texts(column.values), pa.string())
    elif kind == "boolean":
        text = pc.if_else(pa.array(column.values), "true", "false")
    elif kind == "enum":
        symbols = pa.array([json.dumps(symbol) for symbol in column.symbols], pa.string())
        text = symbols.take(pa.array(np.clip(column.values, 0, len(column.symbols) - 1)))
    else:  # null
        text = pa.array(["null"] * count, pa.string())
    if column.valid is not None and kind != "null":
        text = pc.if_else(pa.array(column.valid), text, "null")
    return text


def _quoted(text: pa.Array) -> pa.Array:
    """JSON strings: a text without a byte ``json.dumps`` escapes (control, quote, backslash, DEL and
    beyond ASCII) is quoted as it is; the others are written by json's own encoder."""
    quoted = pc.binary_join_element_wise('"', text, '"', "")
    offsets, data = string_parts(text)
    escaped_bytes = np.zeros(len(data) + 1, dtype=np.int64)
    np.cumsum((data < 0x20) | (data > 0x7E) | (data == 0x22) | (data == 0x5C), out=escaped_bytes[1:])
    special = escaped_bytes[offsets[1:]] > escaped_bytes[offsets[:-1]]
    if special.any():
        rows = np.flatnonzero(special)
        special = pa.array(special)
        escaped = [encode_basestring_ascii(value) for value in text.take(pa.array(rows)).to_pylist()]
        quoted = pc.replace_with_mask(quoted, special, pa.array(escaped, pa.string()))
    return quoted


def _float_texts(values: np.ndarray) -> list[str]:
    """``float.__repr__`` of each value, with JSON's words for NaN and the infinities."""
    texts = list(map(float.__repr__, values.tolist()))
    if not np.isfinite(values).all():
        for row in np.flatnonzero(~np.isfinite(values)).tolist():
            value = values[row]
            texts[row] = "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")
    return texts


def _numpy(array: pa.Array) -> np.ndarray:
    return array.to_numpy(zero_copy_only=False)
