"""The compiled encoders and decoders give fastavro's bytes, records and errors, on any input.

Every Avro type the schemas may use goes through random valid records (seeded), compared byte for
byte and value for value with fastavro; then through corrupted bytes and wrong values, where the
codec's answer (a record, or an error's type and message) must be the one fastavro alone gives.
"""

from __future__ import annotations

import math
import re
import struct
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from random import Random
from uuid import UUID

import pytest

from labelstore.events.typed import EventTypes
from labelstore.schemas.catalog import load_schema_set
from labelstore.schemas.codec import HEADER_SIZE, AvroCodec
from labelstore.schemas.compiled import Unsupported, compile_decoder, compile_encoder
from tests.events.test_typed_events import SCHEMA_SET, write_schemas

NS = "com.example.sink"
KINDS = {"type": "enum", "name": "Kind", "namespace": NS, "symbols": ["A", "B", "C"]}
POINT = {"type": "record", "name": "Point", "namespace": NS, "fields": [
    {"name": "x", "type": "double"}, {"name": "y", "type": "float"}, {"name": "label", "type": ["null", "string"]},
]}
SINK_SCHEMAS = {
    f"thing/{NS}.Kind.avsc": KINDS,
    f"thing/{NS}.Point.avsc": POINT,
    f"thing/{NS}.Everything.avsc": {"type": "record", "name": "Everything", "namespace": NS,
        "labelstore.role": "event", "fields": [
        {"name": "flag", "type": "boolean"},
        {"name": "small", "type": "int"},
        {"name": "big", "type": "long"},
        {"name": "ratio", "type": "float"},
        {"name": "precise", "type": "double"},
        {"name": "blob", "type": "bytes"},
        {"name": "text", "type": "string"},
        {"name": "digest", "type": {"type": "fixed", "name": "Digest", "size": 4}},
        {"name": "kind", "type": f"{NS}.Kind"},
        {"name": "points", "type": {"type": "array", "items": f"{NS}.Point"}},
        {"name": "counts", "type": {"type": "map", "values": "long"}},
        {"name": "nested", "type": {"type": "array", "items": {"type": "array", "items": "int"}}},
        {"name": "maybe_point", "type": ["null", f"{NS}.Point"]},
        {"name": "maybe_long_last", "type": ["long", "null"]},
        {"name": "id", "type": {"type": "string", "logicalType": "uuid"}},
        {"name": "day", "type": {"type": "int", "logicalType": "date"}},
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "at_micros", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "kinds", "type": {"type": "map", "values": f"{NS}.Kind"}},
    ]},
    f"thing/{NS}.Either.avsc": {"type": "record", "name": "Either", "namespace": NS, "labelstore.role": "event",
        "fields": [{"name": "value", "type": ["null", "string", "long"]}]},
}
STRINGS = ["", "a", "é", "日本語", "🙂", "x" * 200, "line\nbreak"]
INTS = [0, 1, -1, 63, -64, 64, -65, 8191, -8192, 2**31 - 1, -(2**31)]
LONGS = [*INTS, 2**40, -(2**40), 2**55, 2**62 - 1, 2**62, -(2**62), 2**63 - 1, -(2**63)]
ZONES = [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]


class RandomRecords:
    def __init__(self, schema: dict, seed: int) -> None:
        self.named = dict(schema.get("__named_schemas", {}))
        self.rng = Random(seed)

    def value(self, avro):  # noqa: C901, PLR0911 - one branch per Avro type
        rng = self.rng
        avro = self.named.get(avro, avro) if isinstance(avro, str) else avro
        if isinstance(avro, list):
            return self.value(rng.choice(avro))
        kind = avro if isinstance(avro, str) else (avro.get("logicalType") or avro["type"])
        if kind == "record":
            return {field["name"]: self.value(field["type"]) for field in avro["fields"]}
        if kind == "null":
            return None
        if kind == "boolean":
            return rng.random() < 0.5
        if kind == "int":
            return rng.choice([*INTS, rng.randint(-(2**31), 2**31 - 1)])
        if kind == "long":
            return rng.choice([*LONGS, rng.randint(-(2**63), 2**63 - 1)])
        if kind == "float":
            return struct.unpack("<f", struct.pack("<f", rng.choice([0.0, -0.0, 1.5, math.inf, rng.uniform(-1e6, 1e6)])))[0]
        if kind == "double":
            return rng.choice([0.0, -0.0, math.inf, -math.inf, 1e-300, rng.uniform(-1e12, 1e12)])
        if kind == "bytes":
            return rng.randbytes(rng.choice([0, 1, 5, 130]))
        if kind == "fixed":
            return rng.randbytes(avro["size"])
        if kind == "string":
            return rng.choice([*STRINGS, str(rng.random())])
        if kind == "enum":
            return rng.choice(avro["symbols"])
        if kind == "array":
            return [self.value(avro["items"]) for _ in range(rng.choice([0, 1, 3]))]
        if kind == "map":
            return {rng.choice(STRINGS) + str(i): self.value(avro["values"]) for i in range(rng.choice([0, 1, 3]))}
        if kind == "uuid":
            return UUID(int=rng.getrandbits(128))
        if kind == "date":
            return date(1970, 1, 1) + timedelta(days=rng.randint(-700_000, 2_900_000))
        if kind in ("timestamp-millis", "timestamp-micros"):
            moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=rng.randint(-10**16, 10**16))
            return moment.astimezone(rng.choice(ZONES))
        raise AssertionError(kind)


@pytest.fixture(scope="module")
def sink(tmp_path_factory) -> AvroCodec:
    return AvroCodec(load_schema_set(write_schemas(tmp_path_factory.mktemp("sink"), SINK_SCHEMAS)))


def outcome(call):
    """What a call gave, comparable: its result's repr (a NaN equals itself there), or its error."""
    try:
        return "ok", repr(call())
    except Exception as exc:  # noqa: BLE001 - comparing errors is the point
        return type(exc).__name__, re.sub(r" at 0x[0-9a-f]+", "", str(exc))  # fastavro names its buffer


def parsed(codec: AvroCodec, event_type: str) -> dict:
    return codec._writers[codec.schema_set.current[event_type].fingerprint][1]  # noqa: SLF001


def test_a_union_of_several_types_is_left_to_fastavro(sink):
    with pytest.raises(Unsupported):
        compile_decoder(parsed(sink, "Either"))
    with pytest.raises(Unsupported):
        compile_encoder(parsed(sink, "Either"))
    record = {"event_id": UUID(int=3), "entity_type": "thing", "entity_id": "t", "event_type": "Either",
              "event_time": datetime(2026, 1, 1, tzinfo=UTC), "source": "s", "payload": {"value": 5}}
    assert sink.decode(sink.encode("Either", record)).record == record


@pytest.mark.parametrize("domain", ["sink", "example"])
def test_valid_records_encode_and_decode_as_fastavro_does(domain, sink):
    codec = sink if domain == "sink" else AvroCodec(SCHEMA_SET)
    compared = 0
    for event_type in sorted(codec.schema_set.current):
        schema = parsed(codec, event_type)
        records = RandomRecords(schema, seed=len(event_type))
        for _ in range(150 if domain == "sink" else 40):
            record = records.value(schema)
            expected = codec._encode_by_fastavro(event_type, record)  # noqa: SLF001
            assert codec.encode(event_type, record) == expected
            assert codec.decode(expected) == codec._decode_by_fastavro(expected)  # noqa: SLF001
            compared += 1
    assert compared >= (150 if domain == "sink" else 400)


def test_events_encode_from_their_models_as_from_their_records(sink):
    types = EventTypes(sink.schema_set)
    schema = parsed(sink, "Everything")
    records = RandomRecords(schema, seed=11)
    for _ in range(100):
        record = {**records.value(schema), "entity_type": "thing", "event_type": "Everything",
                  "entity_id": "t-1", "source": "tests"}
        event = types.parse(record)
        assert sink.encode_object("Everything", event) == sink._encode_by_fastavro("Everything", event.to_record())  # noqa: SLF001


def corruptions(data: bytes, rng: Random):
    body = len(data) - HEADER_SIZE
    for _ in range(12):
        at = HEADER_SIZE + rng.randrange(body)
        yield data[:at]  # truncated
        yield data[:at] + bytes([rng.randrange(256)]) + data[at + 1:]  # one byte changed
        yield data[:at] + b"\xff" * rng.randint(1, 11) + data[at:]  # an overlong varint
    yield data + b"\x00"  # trailing bytes


def test_corrupt_bytes_get_fastavros_answer(sink):
    rng = Random(5)
    compared = 0
    for codec in (sink, AvroCodec(SCHEMA_SET)):
        for event_type in sorted(codec.schema_set.current):
            schema = parsed(codec, event_type)
            records = RandomRecords(schema, seed=7)
            for _ in range(8):
                data = codec._encode_by_fastavro(event_type, records.value(schema))  # noqa: SLF001
                for corrupt in corruptions(data, rng):
                    expected = outcome(lambda corrupt=corrupt: codec._decode_by_fastavro(corrupt))  # noqa: SLF001
                    assert outcome(lambda corrupt=corrupt: codec.decode(corrupt)) == expected, corrupt.hex()
                    compared += 1
    assert compared > 3000


WRONG = {
    "flag": [1, None, "yes"], "small": [2**31, True, 1.0, "1"], "big": [2**63, 1.5, None], "ratio": [1, "x", None],
    "precise": [2, None], "blob": ["text", bytearray(b"x")], "text": [b"bytes", 5, None], "digest": [b"123", b"12345", "1234"],
    "kind": ["D", 0, None], "points": [({"x": 1.0, "y": 1.0, "label": None},), [{"x": 1, "y": 1.0, "label": None}],
                                       [{"x": 1.0, "y": 1.0}]],
    "counts": [{1: 2}, {"a": "b"}, [("a", 1)]], "nested": [[[1.5]], [(1,)]], "maybe_point": [{"x": 1.0}, 5],
    "maybe_long_last": ["1", 1.5], "id": [str(UUID(int=1)), "not-a-uuid", 5],
    "day": [datetime(2026, 1, 1, tzinfo=UTC), "2026-01-01", 20_000], "at": [datetime(2026, 1, 1), 1_700_000_000_000, "x"],
    "at_micros": [datetime(2026, 1, 1), 5], "kinds": [{"a": "Z"}],
}


def test_wrong_values_get_fastavros_answer(sink):
    schema = parsed(sink, "Everything")
    base = RandomRecords(schema, seed=3).value(schema)
    compared = 0
    for field, values in WRONG.items():
        for value in values:
            record = {**base, "payload": {**base["payload"], field: value}}
            expected = outcome(lambda record=record: sink._encode_by_fastavro("Everything", record))  # noqa: SLF001
            assert outcome(lambda record=record: sink.encode("Everything", record)) == expected, (field, value)
            compared += 1
    missing = {**base, "payload": {k: v for k, v in base["payload"].items() if k != "text"}}
    assert outcome(lambda: sink.encode("Everything", missing)) == outcome(
        lambda: sink._encode_by_fastavro("Everything", missing))  # noqa: SLF001
    assert compared > 40


@pytest.mark.parametrize("length", [b"\x01", b"\x03", b"\x7f", b"\xfe\x01"])
def test_negative_and_overlong_lengths_get_fastavros_answer(length):
    codec = AvroCodec(SCHEMA_SET)
    record = {"event_id": UUID(int=9), "entity_type": "order", "entity_id": "order-1", "event_type": "OrderTagged",
              "event_time": datetime(2026, 1, 1, tzinfo=UTC), "source": "tests",
              "payload": {"tag": "abcdefgh", "team": "review"}}
    data = codec.encode("OrderTagged", record)
    corrupt = data.replace(b"\x10abcdefgh", length + b"abcdefgh")
    assert corrupt != data
    assert outcome(lambda: codec.decode(corrupt)) == outcome(lambda: codec._decode_by_fastavro(corrupt))  # noqa: SLF001


def lean(record: dict) -> dict:
    return {**record, "event_id": str(record["event_id"]),
            "event_time": (record["event_time"] - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)}


@pytest.mark.parametrize("domain", ["sink", "example"])
def test_lean_records_hold_the_envelopes_id_as_text_and_time_in_milliseconds(domain, sink):
    codec = sink if domain == "sink" else AvroCodec(SCHEMA_SET)
    for event_type in sorted(codec.schema_set.current):
        schema = parsed(codec, event_type)
        records = RandomRecords(schema, seed=4)
        for _ in range(30):
            data = codec.encode(event_type, records.value(schema))
            assert repr(codec.decode(data, lean=True).record) == repr(lean(codec.decode(data).record))


@pytest.mark.parametrize(("event_id", "event_time"), [
    ("8C1B54B7-B3CC-4F5C-9D7E-6F0A1D7C2B11", 0),  # not canonical: fastavro's UUID reads it
    ("{8c1b54b7-b3cc-4f5c-9d7e-6f0a1d7c2b11}", 0),
    ("not a uuid", 0),
    (str(UUID(int=5)), 253402300799999),  # the last millisecond of 9999
    (str(UUID(int=5)), 253402300800000),  # after it: fastavro's datetime overflows
    (str(UUID(int=5)), -62135596800001),
])
def test_lean_decoding_of_unusual_envelopes_is_fastavros(event_id, event_time):
    codec = AvroCodec(SCHEMA_SET)
    record = {"event_id": event_id, "entity_type": "order", "entity_id": "o", "event_type": "OrderTagged",
              "event_time": event_time, "source": "s", "payload": {"tag": "t", "team": "r"}}
    data = codec._encode_by_fastavro("OrderTagged", record)  # noqa: SLF001
    assert outcome(lambda: codec.decode(data, lean=True).record) == outcome(lambda: lean(codec.decode(data).record))
