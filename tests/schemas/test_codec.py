import json
import uuid
from datetime import UTC, datetime

import pytest

from tests.fraud_example import EXAMPLE
from labelstore.schemas.catalog import EventSchema, SchemaSet, compose_event_schema, load_schema_set
from labelstore.schemas.codec import MAGIC, AvroCodec
from labelstore.schemas.exceptions import (
    CorruptMessageError,
    EncodeError,
    UnknownEventTypeError,
    UnknownSchemaError,
    UnresolvableSchemaError,
)


def classified(**payload):
    return {
        "event_id": uuid.UUID("00000000-0000-4000-8000-000000000001"),
        "entity_type": "order",
        "entity_id": "order-1",
        "event_type": "OrderClassified",
        "event_time": datetime(2026, 1, 1, 12, 0, tzinfo=UTC),
        "source": "risk-model",
        "payload": {"classification": "FRAUD", "model_score": 0.9, "model_version": "v1", **payload},
    }


@pytest.fixture(scope="module")
def codec():
    return AvroCodec()


def test_single_object_header_carries_the_writer_fingerprint(codec):
    data = codec.encode("OrderClassified", classified())
    assert data[:2] == MAGIC
    assert data[2:10] == codec.schema_set.event_schema("OrderClassified").fingerprint


def test_fingerprint_matches_the_avro_specification_vector():
    # CRC-64-AVRO of the canonical form of "null" is 0x63dd24e7cc258f8a, written little-endian.
    schema = {"type": "record", "name": "X", "labelstore.entity_type": "e", "labelstore.event_type": "X", "fields": []}
    assert len(EventSchema.from_schema(schema).fingerprint) == 8
    from fastavro.schema import fingerprint

    assert bytes.fromhex(fingerprint('"null"', "CRC-64-AVRO")) == (0x63DD24E7CC258F8A).to_bytes(8, "little")


def test_round_trip(codec):
    decoded = codec.decode(codec.encode("OrderClassified", classified()))
    assert (decoded.entity_type, decoded.event_type) == ("order", "OrderClassified")
    assert decoded.record == classified()


def test_encode_error_names_the_field(codec):
    with pytest.raises(EncodeError, match=r"classification.*MAYBE"):
        codec.encode("OrderClassified", classified(classification="MAYBE"))


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        (b"", CorruptMessageError, "magic C3 01"),
        (b"{\"json\": 1}", CorruptMessageError, "magic C3 01"),
        (MAGIC + bytes(8) + b"\x00", UnknownSchemaError, "0000000000000000"),
    ],
)
def test_bad_bytes_raise_a_clear_error(codec, data, error, message):
    with pytest.raises(error, match=message):
        codec.decode(data)


def test_truncated_and_padded_bodies_are_corrupt(codec):
    data = codec.encode("OrderClassified", classified())
    with pytest.raises(CorruptMessageError, match="does not decode"):
        codec.decode(data[:-5])
    with pytest.raises(CorruptMessageError, match="trailing bytes"):
        codec.decode(data + b"\x00")


def _with_payload(schema_set: SchemaSet, event_type: str, payload: dict) -> SchemaSet:
    envelope = {"fields": [f for f in schema_set.current[event_type].schema["fields"] if f["name"] != "payload"]}
    event = EventSchema.from_schema(compose_event_schema(envelope, payload, "order"))
    return SchemaSet(current={**schema_set.current, event_type: event}, released={})


def test_old_writer_is_resolved_to_the_current_reader():
    current = load_schema_set(EXAMPLE.schemas_dir)
    payload = json.loads(json.dumps(current.current["OrderTagged"].schema["fields"][-1]["type"]))
    old_payload = {**payload, "fields": [f for f in payload["fields"] if f["name"] != "team"]}
    old = _with_payload(current, "OrderTagged", old_payload)
    new_payload = {**payload, "fields": [*payload["fields"], {"name": "note", "type": ["null", "string"], "default": None}]}
    new = _with_payload(current, "OrderTagged", new_payload)
    record = {**classified(), "event_type": "OrderTagged", "payload": {"tag": "false-negative"}}
    written_by_old = AvroCodec(old).encode("OrderTagged", record)
    reader = AvroCodec(SchemaSet(current=new.current, released={**old.writers()}))
    with pytest.raises(UnresolvableSchemaError, match="No default value for field team"):
        reader.decode(written_by_old)
    team_default = {**new_payload, "fields": [{**f, "default": "unknown"} if f["name"] == "team" else f for f in new_payload["fields"]]}
    tolerant = _with_payload(current, "OrderTagged", team_default)
    decoded = AvroCodec(SchemaSet(current=tolerant.current, released={**old.writers()})).decode(written_by_old)
    assert decoded.record["payload"] == {"tag": "false-negative", "team": "unknown", "note": None}


def test_event_type_unknown_to_the_reader():
    full = load_schema_set(EXAMPLE.schemas_dir)
    without = SchemaSet(current={k: v for k, v in full.current.items() if k != "ReviewerVerdict"}, released={s.fingerprint: s for s in full.current.values()})
    data = AvroCodec(full).encode("ReviewerVerdict", {**classified(), "entity_type": "content", "event_type": "ReviewerVerdict",
                                                       "payload": {"verdict": "OK", "reviewer": "r1"}})
    with pytest.raises(UnknownEventTypeError, match="ReviewerVerdict"):
        AvroCodec(without).decode(data)
