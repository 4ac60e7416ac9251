"""Avro encoders and decoders compiled per schema: fastavro's results, without its interpretation.

fastavro walks a schema for every record it reads or writes: on the demo's events that is 10 us
a record, the largest cost of publishing, processing and archiving. A function generated once per
schema does the same work in straight-line Python in a fraction of that (see docs/decisions.md).

The compiled functions are a fast path, not a second authority. A decoder returns only when every
byte it read is unambiguous (varints of at most 9 bytes, enum and union indexes in range, lengths
within the data, booleans 0 or 1, no bytes left over); an encoder only when every value is of the
exact Python type its Avro type is written from (a ``str`` for a string, an aware ``datetime`` for
a timestamp, a ``None`` or a value for a ``["null", T]`` union). Anything else raises ``Fallback``,
and the codec asks fastavro, so errors and every corner of its behaviour stay fastavro's. Unions of
several non-null types are left to fastavro entirely, since choosing a branch is fastavro's call.
"""

from __future__ import annotations

import struct
import re
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID

Decoder = Callable[[bytes, int], dict[str, Any]]  # (data, offset of the body) -> record
Encoder = Callable[[Any, bytearray], None]  # (record, buffer to append to)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DAYS_SHIFT = date(1970, 1, 1).toordinal()
INT_RANGE = range(-(2**31), 2**31)
# Epoch milliseconds of the datetimes fastavro can return for a timestamp-millis (years 1 to 9999).
DATETIME_MILLISECONDS = range(-((EPOCH - datetime.min.replace(tzinfo=UTC)) // timedelta(milliseconds=1)),
                              (datetime.max.replace(tzinfo=UTC) - EPOCH) // timedelta(milliseconds=1) + 1)
# The form ``str(UUID(text))`` gives: a string of it is its own canonical form.
canonical_uuid = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}").fullmatch
LONG_RANGE = range(-(2**63), 2**63)


class Fallback(Exception):  # noqa: N818 - not an error: "ask fastavro"
    """The compiled function does not decide this record; fastavro does."""


class Unsupported(Exception):  # noqa: N818
    """The schema has a part only fastavro handles: no compiled function for it."""


# --- runtime helpers of the generated code --------------------------------------------------------

def read_long(data: bytes, pos: int) -> tuple[int, int]:
    byte = data[pos]
    if byte < 0x80:
        return (byte >> 1) ^ -(byte & 1), pos + 1
    value, shift = byte & 0x7F, 7
    while True:
        pos += 1
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return (value >> 1) ^ -(value & 1), pos + 1
        shift += 7
        if shift > 56:  # a tenth byte: fastavro's 64-bit arithmetic decides what it means
            raise Fallback


def read_string(data: bytes, pos: int) -> tuple[str, int]:
    size, pos = read_long(data, pos)
    end = pos + size
    if size < 0 or end > len(data):
        raise Fallback
    return data[pos:end].decode(), end


_ONE_BYTE = [bytes([n]) for n in range(0x80)]


def long_bytes(value: int) -> bytes:
    encoded = (value << 1) ^ (value >> 63)
    if encoded < 0x80:
        return _ONE_BYTE[encoded]
    out = bytearray()
    while encoded >= 0x80:
        out.append((encoded & 0x7F) | 0x80)
        encoded >>= 7
    out.append(encoded)
    return bytes(out)


def timestamp_millis(value: datetime) -> int:
    delta = value - EPOCH  # fastavro's arithmetic, to the truncated millisecond
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def timestamp_micros(value: datetime) -> int:
    delta = value - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


_RUNTIME = {
    "Fallback": Fallback, "read_long": read_long, "read_string": read_string,
    "long_bytes": long_bytes, "timestamp_millis": timestamp_millis, "timestamp_micros": timestamp_micros,
    "unpack_float": struct.Struct("<f").unpack_from, "unpack_double": struct.Struct("<d").unpack_from,
    "pack_float": struct.Struct("<f").pack, "pack_double": struct.Struct("<d").pack,
    "UUID": UUID, "EPOCH": EPOCH, "timedelta": timedelta, "date": date, "datetime": datetime,
    "DAYS_SHIFT": DAYS_SHIFT, "INT_RANGE": INT_RANGE, "DATETIME_MILLISECONDS": DATETIME_MILLISECONDS,
    "canonical_uuid": canonical_uuid, "LONG_RANGE": LONG_RANGE,
}


# --- code generation ------------------------------------------------------------------------------

class Source:
    """Lines of a generated function, fresh variable names, and the constants it refers to
    (also used for ``labelstore.events.checks``)."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.constants: list[Any] = []
        self.text = ""  # the function's source, once built
        self._names = 0

    def name(self, prefix: str) -> str:
        self._names += 1
        return f"{prefix}{self._names}"

    def constant(self, value: Any) -> str:
        self.constants.append(value)
        return f"constants[{len(self.constants) - 1}]"

    def add(self, depth: int, *lines: str) -> None:
        self.lines += ["    " * depth + line for line in lines]

    def build(self, header: str, footer: list[str], title: str, runtime: Mapping[str, Any] | None = None) -> Callable:
        """The function ``compiled`` that ``header`` defines, with these lines and then ``footer``."""
        self.text = "\n".join([header, *self.lines, *footer])
        namespace = {**(_RUNTIME if runtime is None else runtime), "constants": tuple(self.constants)}
        exec(compile(self.text, f"<{title}>", "exec"), namespace)  # noqa: S102 - names enter only as repr()
        return namespace["compiled"]


def _named(schema: Mapping[str, Any]) -> dict[str, Any]:
    return dict(schema.get("__named_schemas", {}))


def _resolve(avro: Any, named: Mapping[str, Any]) -> Any:
    return named[avro] if isinstance(avro, str) and avro in named else avro


def _kind(avro: Any) -> str:
    if isinstance(avro, list):
        return "union"
    if isinstance(avro, str):
        return avro
    return avro.get("logicalType") or avro["type"]


def _nullable(branches: list[Any]) -> tuple[int, Any] | None:
    """(index of the non-null branch, its type) of a ``["null", T]`` or ``[T, "null"]`` union."""
    if len(branches) == 2 and "null" in branches:
        index = 1 - branches.index("null")
        return index, branches[index]
    return None


def compile_decoder(schema: Mapping[str, Any], *, lean: Collection[str] = ()) -> Decoder:
    """A decoder of records written with ``schema`` (a fastavro-parsed schema) and read as it.

    The top-level fields named in ``lean`` keep their base type: a uuid its canonical string, a
    timestamp-millis its epoch milliseconds (only values fastavro would read; others fall back)."""
    source, named = Source(), _named(schema)
    source.add(1, "end_of_data = len(data)")
    result = _decode_value(source, 1, schema, named, lean)
    footer = ["    if pos != len(data):", "        raise Fallback", f"    return {result}"]
    return source.build("def compiled(data, pos):", footer, f"decoder of {schema['name']}")


def _decode_value(source: Source, depth: int, avro: Any, named: Mapping[str, Any], lean: Collection[str] = ()) -> str:
    """Lines that read one value at ``pos``; returns the expression (a variable) holding it."""
    avro = _resolve(avro, named)
    kind, out = _kind(avro), source.name("v")
    add = source.add
    if kind == "record":
        fields = [(field["name"], _decode_lean(source, depth, field["type"], named) if field["name"] in lean
                   else _decode_value(source, depth, field["type"], named)) for field in avro["fields"]]
        add(depth, f"{out} = {{{', '.join(f'{name!r}: {value}' for name, value in fields)}}}")
    elif kind in ("string", "bytes"):
        size, end = source.name("size"), source.name("end")
        _read_varint(source, depth, size)
        add(depth, f"{end} = pos + {size}", f"if {size} < 0 or {end} > end_of_data:", "    raise Fallback",
            f"{out} = data[pos:{end}]", f"pos = {end}")
        if kind == "string":
            add(depth, f"{out} = {out}.decode()")
    elif kind in ("long", "int"):
        _read_varint(source, depth, out)
    elif kind == "null":
        add(depth, f"{out} = None")
    elif kind == "boolean":
        add(depth, f"{out} = data[pos]", f"if {out} > 1:", "    raise Fallback", f"{out} = {out} == 1", "pos += 1")
    elif kind in ("float", "double"):
        add(depth, f"{out} = unpack_{kind}(data, pos)[0]", f"pos += {4 if kind == 'float' else 8}")
    elif kind == "fixed":
        add(depth, f"{out} = data[pos:pos + {avro['size']}]", f"if len({out}) != {avro['size']}:", "    raise Fallback",
            f"pos += {avro['size']}")
    elif kind == "enum":
        symbols = source.constant(tuple(avro["symbols"]))
        _read_varint(source, depth, out)
        add(depth, f"if not 0 <= {out} < {len(avro['symbols'])}:", "    raise Fallback", f"{out} = {symbols}[{out}]")
    elif kind in ("uuid", "timestamp-millis", "timestamp-micros", "date"):
        if kind == "uuid":
            add(depth, f"{out}, pos = read_string(data, pos)")
        else:
            _read_varint(source, depth, out)
        add(depth, {"uuid": f"{out} = UUID({out})",
                    "timestamp-millis": f"{out} = EPOCH + timedelta(microseconds={out} * 1000)",
                    "timestamp-micros": f"{out} = EPOCH + timedelta(microseconds={out})",
                    "date": f"{out} = date.fromordinal({out} + DAYS_SHIFT)"}[kind])
    elif kind in ("array", "map"):
        count = source.name("n")
        add(depth, f"{out} = {'[]' if kind == 'array' else '{}'}")
        _read_varint(source, depth, count)
        add(depth, f"while {count}:", f"    if {count} < 0:", "        raise Fallback", f"    for _ in range({count}):")
        if kind == "map":
            key = source.name("k")
            add(depth + 2, f"{key}, pos = read_string(data, pos)")
            item = _decode_value(source, depth + 2, avro["values"], named)
            add(depth + 2, f"{out}[{key}] = {item}")
        else:
            item = _decode_value(source, depth + 2, avro["items"], named)
            add(depth + 2, f"{out}.append({item})")
        _read_varint(source, depth + 1, count)
    elif kind == "union":
        nullable = _nullable(avro)
        if nullable is None:
            raise Unsupported("a union of several non-null types")
        index, branch = nullable
        _read_varint(source, depth, out)
        add(depth, f"if {out} == {1 - index}:", f"    {out} = None",
            f"elif {out} == {index}:")
        value = _decode_value(source, depth + 1, branch, named)
        add(depth, f"    {out} = {value}", "else:", "    raise Fallback")
    else:
        raise Unsupported(f"type {kind!r}")
    return out


def _decode_lean(source: Source, depth: int, avro: Any, named: Mapping[str, Any]) -> str:
    kind, out = _kind(_resolve(avro, named)), source.name("v")
    if kind == "uuid":
        source.add(depth, f"{out}, pos = read_string(data, pos)", f"if not canonical_uuid({out}):", "    raise Fallback")
    elif kind == "timestamp-millis":
        _read_varint(source, depth, out)
        source.add(depth, f"if {out} not in DATETIME_MILLISECONDS:", "    raise Fallback")
    else:
        raise Unsupported(f"a lean {kind}")
    return out


def _read_varint(source: Source, depth: int, target: str) -> None:
    """Lines that read a long at ``pos`` into ``target``: a one-byte value inline, others by a call."""
    source.add(depth, "byte = data[pos]", "if byte < 0x80:", f"    {target} = (byte >> 1) ^ -(byte & 1)",
               "    pos += 1", "else:", f"    {target}, pos = read_long(data, pos)")


def compile_encoder(schema: Mapping[str, Any], *, attributes: bool = False) -> Encoder:
    """An encoder of records of ``schema`` (fastavro-parsed): of mappings, or with ``attributes``,
    of objects whose fields are attributes (the event models), nested records alike."""
    source, named = Source(), _named(schema)
    _encode_value(source, 1, schema, named, "record", attributes)
    return source.build("def compiled(record, out):", ["    return None"], f"encoder of {schema['name']}")


def _encode_value(source: Source, depth: int, avro: Any, named: Mapping[str, Any], value: str,
                  attributes: bool) -> None:
    avro = _resolve(avro, named)
    kind, add = _kind(avro), source.add
    if kind == "record":
        if not attributes:
            add(depth, f"if type({value}) is not dict:", "    raise Fallback")
        for field in avro["fields"]:
            item = source.name("f")
            access = f"{value}.{field['name']}" if attributes else f"{value}[{field['name']!r}]"
            add(depth, f"{item} = {access}")
            _encode_value(source, depth, field["type"], named, item, attributes)
    elif kind in ("string", "uuid"):
        check = "str" if kind == "string" else "UUID"
        text = f"{value}.encode()" if kind == "string" else f"str({value}).encode()"
        data = source.name("s")
        add(depth, f"if type({value}) is not {check}:", "    raise Fallback", f"{data} = {text}",
            f"out += long_bytes(len({data}))", f"out += {data}")
    elif kind == "bytes":
        add(depth, f"if type({value}) is not bytes:", "    raise Fallback", f"out += long_bytes(len({value}))",
            f"out += {value}")
    elif kind in ("long", "int"):
        bounds = "LONG_RANGE" if kind == "long" else "INT_RANGE"
        add(depth, f"if type({value}) is not int or {value} not in {bounds}:", "    raise Fallback",
            f"out += long_bytes({value})")
    elif kind == "null":
        add(depth, f"if {value} is not None:", "    raise Fallback")
    elif kind == "boolean":
        add(depth, f"if type({value}) is not bool:", "    raise Fallback", f"out.append({value})")
    elif kind in ("float", "double"):
        add(depth, f"if type({value}) is not float:", "    raise Fallback", f"out += pack_{kind}({value})")
    elif kind == "fixed":
        add(depth, f"if type({value}) is not bytes or len({value}) != {avro['size']}:", "    raise Fallback",
            f"out += {value}")
    elif kind == "enum":
        indexes = source.constant({symbol: long_bytes(i) for i, symbol in enumerate(avro["symbols"])})
        add(depth, f"if type({value}) is not str or {value} not in {indexes}:", "    raise Fallback",
            f"out += {indexes}[{value}]")
    elif kind in ("timestamp-millis", "timestamp-micros"):
        convert = kind.replace("-", "_")
        add(depth, f"if type({value}) is not datetime or {value}.tzinfo is None:", "    raise Fallback",
            f"out += long_bytes({convert}({value}))")
    elif kind == "date":
        add(depth, f"if type({value}) is not date:", "    raise Fallback",
            f"out += long_bytes({value}.toordinal() - DAYS_SHIFT)")
    elif kind in ("array", "map"):
        container, item = ("list", source.name("i")) if kind == "array" else ("dict", source.name("m"))
        add(depth, f"if type({value}) is not {container}:", "    raise Fallback", f"if {value}:",
            f"    out += long_bytes(len({value}))")
        if kind == "array":
            add(depth + 1, f"for {item} in {value}:")
            _encode_value(source, depth + 2, avro["items"], named, item, attributes)
        else:
            key = source.name("k")
            add(depth + 1, f"for {key}, {item} in {value}.items():", f"    if type({key}) is not str:",
                "        raise Fallback", f"    {key} = {key}.encode()", f"    out += long_bytes(len({key}))",
                f"    out += {key}")
            _encode_value(source, depth + 2, avro["values"], named, item, attributes)
        add(depth, "out.append(0)")
    elif kind == "union":
        nullable = _nullable(avro)
        if nullable is None:
            raise Unsupported("a union of several non-null types")
        index, branch = nullable
        add(depth, f"if {value} is None:", f"    out.append({2 * (1 - index)})", "else:",
            f"    out.append({2 * index})")
        _encode_value(source, depth + 1, branch, named, value, attributes)
    else:
        raise Unsupported(f"type {kind!r}")
