"""Avro bodies of many records decoded at once, field by field, into columns.

The compiled decoders (``labelstore.schemas.compiled``) still walk one record at a time in Python:
about 6 us a record, most of what the archive spends. Records of one schema share their layout, so
each field can be read for all of them in one step: a varint, a length, a double at every record's
position, with numpy. A batch of 10,000 records costs a few dozen array operations per field.

Like the compiled decoders, this is a fast path, not an authority: a record is decoded here only
when every byte of it is unambiguous by the same rules (varints of at most 9 bytes, enum and union
indexes in range, lengths within the record, booleans 0 or 1, UTF-8 text, no bytes left over,
canonical uuid text, timestamps a datetime can hold). Any other record is marked ``bad`` and its
caller decodes it one by one, where fastavro has the last word. Schemas with parts this module does
not read (arrays, maps, unions of several types, bytes, fixed, decimals, dates, microsecond
timestamps) raise ``Unsupported`` when the decoder is built.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from labelstore.schemas.compiled import DATETIME_MILLISECONDS, Unsupported, _kind, _named, _nullable, _resolve

PADDING = 16  # zero bytes after the data: a varint read past a record's end stays inside the buffer
_FIXED_WIDTH = {"float": (4, "<f4"), "double": (8, "<f8")}
_LOGICAL_BASE = {"uuid": "string", "timestamp-millis": "long"}


@dataclass
class Column:
    """One field's values for every record of a batch (meaningful where the record reached the field).

    ``kind`` is the Avro type the value is written as (``long`` for a timestamp-millis, ``string``
    for a uuid); ``valid`` is False where a ``["null", T]`` union held null."""

    kind: str
    avro: str
    values: np.ndarray | None = None  # numbers, booleans, enum indexes
    starts: np.ndarray | None = None  # strings: where each one's bytes begin in the buffer
    lengths: np.ndarray | None = None
    valid: np.ndarray | None = None
    symbols: tuple[str, ...] = ()
    fields: dict[str, Column] = field(default_factory=dict)
    text: pa.Array | None = None  # strings, made once

    def strings(self, buffer: np.ndarray) -> pa.Array:
        if self.text is None:
            self.text = _gather_strings(buffer, self.starts, self.lengths)
        return self.text


@dataclass
class Decoded:
    record: Column
    bad: np.ndarray  # records left to the one-by-one decoder
    buffer: np.ndarray


class _Reading:
    """Where every record of the batch is, and which ones this path has given up on."""

    def __init__(self, buffer: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> None:
        self.buffer, self.pos, self.end = buffer, starts.copy(), ends
        self.limit = len(buffer) - PADDING
        self.bad = np.zeros(len(starts), dtype=bool)

    def varint(self, rows: np.ndarray) -> np.ndarray:
        position = self.pos[rows]
        byte = self.buffer[position].astype(np.int64)
        value, size, more = byte & 0x7F, np.ones(len(rows), dtype=np.int64), byte >= 0x80
        shift = 7
        while more.any():
            pending = np.flatnonzero(more)
            if shift > 56:  # a tenth byte: fastavro's 64-bit arithmetic decides what it means
                self.bad[rows[pending]] = True
                break
            byte = self.buffer[position[pending] + size[pending]].astype(np.int64)
            value[pending] |= (byte & 0x7F) << shift
            size[pending] += 1
            more[pending] = byte >= 0x80
            shift += 7
        self.advance(rows, position + size)
        return (value >> 1) ^ -(value & 1)

    def advance(self, rows: np.ndarray, to: np.ndarray) -> None:
        self.bad[rows[to > self.end[rows]]] = True
        self.pos[rows] = np.minimum(to, self.limit)


class BatchDecoder:
    """Decodes the bodies of records written with one fastavro-parsed record schema.

    Columns hold base types: a uuid its (canonical) text, a timestamp-millis its epoch
    milliseconds, as ``compile_decoder``'s lean fields are; readers convert where they need to."""

    def __init__(self, schema: Mapping[str, Any]) -> None:
        self.schema, self.named = schema, _named(schema)
        _check_supported(schema, self.named, set())

    def decode(self, buffer: np.ndarray, starts: np.ndarray, ends: np.ndarray, *,
               expected: Mapping[str, str] | None = None) -> Decoded:
        """``buffer``: the records' bytes with ``PADDING`` zero bytes after them; each body runs
        from ``starts[i]`` to ``ends[i]``. ``expected``: top-level string fields that must hold the
        given text (a record with another is ``bad``); their texts are not made."""
        reading = _Reading(buffer, starts, ends)
        rows = np.arange(len(starts))
        record = self._read(reading, rows, self.schema)
        reading.bad |= reading.pos != ends
        for name, text in (expected or {}).items():
            column = record.fields[name]
            reading.bad |= ~_equal_to(buffer, column.starts, column.lengths, text.encode())
            column.text = pa.array([text] * len(starts), pa.string())
        _require_text(record, buffer, reading.bad)
        return Decoded(record, reading.bad, buffer)

    def _read(self, reading: _Reading, rows: np.ndarray, avro: Any) -> Column:
        avro = _resolve(avro, self.named)
        kind, count = _kind(avro), len(reading.pos)
        if kind == "record":
            column = Column("record", "record")
            for item in avro["fields"]:
                column.fields[item["name"]] = self._read(reading, rows, item["type"])
            return column
        if kind == "union":
            index, branch = _nullable(avro)
            chosen = reading.varint(rows)
            reading.bad[rows[(chosen != index) & (chosen != 1 - index)]] = True
            present = rows[chosen == index]
            column = self._read(reading, present, branch)
            column.valid = np.zeros(count, dtype=bool)
            column.valid[present] = True
            return column
        if kind in ("string", "uuid"):
            lengths = np.zeros(count, dtype=np.int64)
            size = reading.varint(rows)
            starts = reading.pos[rows]
            wrong = (size < 0) | (starts + size > reading.end[rows])
            reading.bad[rows[wrong]] = True
            size[wrong] = 0
            lengths[rows] = size
            all_starts = np.zeros(count, dtype=np.int64)
            all_starts[rows] = starts
            reading.advance(rows, starts + size)
            return Column("string", kind, starts=all_starts, lengths=lengths)
        if kind in ("long", "int", "enum", "timestamp-millis"):
            values = np.zeros(count, dtype=np.int64)
            values[rows] = reading.varint(rows)
            if kind == "enum":
                reading.bad[rows[(values[rows] < 0) | (values[rows] >= len(avro["symbols"]))]] = True
                return Column("enum", "enum", values=values, symbols=tuple(avro["symbols"]))
            if kind == "timestamp-millis":
                inside = (values[rows] >= DATETIME_MILLISECONDS.start) & (values[rows] < DATETIME_MILLISECONDS.stop)
                reading.bad[rows[~inside]] = True
                return Column("long", kind, values=values)
            return Column("long", kind, values=values)
        if kind == "boolean":
            values = np.zeros(count, dtype=bool)
            byte = reading.buffer[reading.pos[rows]]
            reading.bad[rows[byte > 1]] = True
            values[rows] = byte == 1
            reading.advance(rows, reading.pos[rows] + 1)
            return Column("boolean", kind, values=values)
        if kind in _FIXED_WIDTH:
            width, dtype = _FIXED_WIDTH[kind]
            position = reading.pos[rows]
            raw = reading.buffer[position[:, None] + np.arange(width)]
            values = np.zeros(count, dtype=np.float64)
            values[rows] = raw.view(dtype).reshape(-1).astype(np.float64) if len(rows) else []
            reading.advance(rows, position + width)
            return Column("double", kind, values=values)
        if kind == "null":
            return Column("null", kind, valid=np.zeros(count, dtype=bool))
        raise Unsupported(f"type {kind!r}")  # not reached: _check_supported refused it


def _check_supported(avro: Any, named: Mapping[str, Any], seen: set[str]) -> None:
    avro = _resolve(avro, named)
    kind = _kind(avro)
    if kind == "record":
        if avro["name"] in seen:
            raise Unsupported("a recursive record")
        for item in avro["fields"]:
            _check_supported(item["type"], named, seen | {avro["name"]})
    elif kind == "union":
        nullable = _nullable(avro)
        if nullable is None or _kind(_resolve(nullable[1], named)) in ("union", "null"):
            raise Unsupported("a union of several non-null types")
        _check_supported(nullable[1], named, seen)
    elif kind in _LOGICAL_BASE:
        if avro["type"] != _LOGICAL_BASE[kind]:
            raise Unsupported(f"a {kind} on a {avro['type']}")
    elif kind not in ("string", "long", "int", "enum", "boolean", "float", "double", "null"):
        raise Unsupported(f"type {kind!r}")


def _require_text(column: Column, buffer: np.ndarray, bad: np.ndarray) -> None:
    """Strings must be UTF-8, and uuids in the canonical form a UUID's text takes."""
    if column.kind == "record":
        for inner in column.fields.values():
            _require_text(inner, buffer, bad)
        return
    if column.kind != "string" or column.text is not None:
        return
    column.lengths[bad] = 0  # what a record already given up on holds is not read
    text = column.strings(buffer)
    try:
        text.validate(full=True)
    except pa.ArrowInvalid:  # rare: find the records at fault, one by one
        invalid = np.array([not _is_utf8(buffer, start, length) for start, length in
                            zip(column.starts.tolist(), column.lengths.tolist(), strict=True)])
        bad |= invalid
        column.lengths[invalid] = 0
        column.text = None
        text = column.strings(buffer)
    if column.avro == "uuid":
        present = column.valid if column.valid is not None else np.ones(len(text), dtype=bool)
        bad |= present & ~_canonical_uuids(buffer, column.starts, column.lengths)


_HYPHENS = np.zeros(36, dtype=bool)
_HYPHENS[[8, 13, 18, 23]] = True


def _canonical_uuids(buffer: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Which texts are a UUID's canonical form (lowercase hex, hyphens at 8, 13, 18 and 23)."""
    text = buffer[np.where(lengths == 36, starts, 0)[:, None] + np.arange(36)]
    digits = ((text >= ord("0")) & (text <= ord("9"))) | ((text >= ord("a")) & (text <= ord("f")))
    return (lengths == 36) & np.where(_HYPHENS, text == ord("-"), digits).all(axis=1)


def _equal_to(buffer: np.ndarray, starts: np.ndarray, lengths: np.ndarray, text: bytes) -> np.ndarray:
    found = buffer[np.where(lengths == len(text), starts, 0)[:, None] + np.arange(len(text))]
    return (lengths == len(text)) & (found == np.frombuffer(text, dtype=np.uint8)).all(axis=1)


def string_parts(text: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, bytes) of a string array, as numpy views."""
    _, offsets, data = text.buffers()
    offsets = np.frombuffer(offsets, dtype=np.int32 if text.type == pa.string() else np.int64)
    offsets = offsets[text.offset:text.offset + len(text) + 1]
    return offsets, np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8)


def _is_utf8(buffer: np.ndarray, start: int, length: int) -> bool:
    try:
        buffer[start:start + length].tobytes().decode()
    except UnicodeDecodeError:
        return False
    return True


def _gather_strings(buffer: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> pa.Array:
    offsets = np.zeros(len(starts) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    total = int(offsets[-1])
    data = buffer[np.repeat(starts - offsets[:-1], lengths) + np.arange(total)] if total else np.zeros(0, np.uint8)
    if total < 2**31:
        return pa.StringArray.from_buffers(len(starts), pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(data))
    return pa.LargeStringArray.from_buffers(len(starts), pa.py_buffer(offsets), pa.py_buffer(data)).cast(pa.string())
