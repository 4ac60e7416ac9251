"""``DecodedChecks`` refuses exactly the decoded records the event models refuse, in their words.

The processor and the materializer check decoded records with models of the constrained fields
alone; every case here is also put to the full model (``EventTypes.parse``), and both must give
the same verdict and the same message.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from labelstore.events.checks import DecodedChecks
from labelstore.events.exceptions import InvalidEventError
from labelstore.events.typed import CONSTRAINTS_ATTRIBUTE, EventTypes
from labelstore.intake import Rejection, admit
from labelstore.schemas.codec import AvroCodec
from labelstore.schemas.catalog import load_schema_set
from tests.events.test_typed_events import (
    ACCOUNT_SCHEMAS, EXAMPLES, SCHEMA_SET, TYPES, constraint_violations, example_record, mutate, named_types,
    write_schemas, ACCOUNT_PAYLOADS,
)

NS = "com.example.fleet"
PART = {"type": "record", "name": "Part", "namespace": NS, "fields": [
    {"name": "serial", "type": "string", CONSTRAINTS_ATTRIBUTE: {"pattern": "^[A-Z]+-[0-9]+$"}},
    {"name": "weight", "type": "float", CONSTRAINTS_ATTRIBUTE: {"gt": 0.0}},
]}
# Constraints below arrays, maps, nullable and multi-branch unions, and a bare int (32 bits).
FLEET_SCHEMAS = {
    f"truck/{NS}.Part.avsc": PART,
    f"truck/{NS}.Serviced.avsc": {"type": "record", "name": "Serviced", "namespace": NS,
        "labelstore.role": "event", "fields": [
        {"name": "parts", "type": {"type": "array", "items": f"{NS}.Part"}},
        {"name": "by_bay", "type": {"type": "map", "values": f"{NS}.Part"}},
        {"name": "spare", "type": ["null", f"{NS}.Part"], "default": None},
        {"name": "reading", "type": ["null", "long", f"{NS}.Part"], "default": None},
        {"name": "odometer", "type": "int"},
        {"name": "notes", "type": {"type": "array", "items": "string"}, CONSTRAINTS_ATTRIBUTE: {"max_length": 2}},
    ]},
    f"truck/{NS}.Parked.avsc": {"type": "record", "name": "Parked", "namespace": NS,
        "labelstore.role": "event", "fields": [
        {"name": "bay", "type": "string"}, {"name": "since", "type": "long"},
        {"name": "seen", "type": {"type": "array", "items": "double"}},
    ]},
}
GOOD_PART = {"serial": "AX-1", "weight": 2.5}
SERVICED = {"parts": [GOOD_PART], "by_bay": {"b1": GOOD_PART}, "spare": GOOD_PART, "reading": GOOD_PART,
            "odometer": 12, "notes": ["ok"]}
BAD_PART = {"serial": "ax-1", "weight": 2.5}


def verdict(checks: DecodedChecks, types: EventTypes, event_type: str, record: dict) -> tuple[str | None, str | None]:
    """(the checks' refusal, the full model's refusal); None where one accepts. The checks only
    tell; a refusal is worded by the full model (as ``labelstore.intake.admit`` does)."""
    try:
        types.parse(record)
        refused_by_model = None
    except InvalidEventError as exc:
        refused_by_model = str(exc)
    return (None if checks.passes(event_type, record) else refused_by_model), refused_by_model


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    schema_set = load_schema_set(write_schemas(tmp_path_factory.mktemp("fleet"), FLEET_SCHEMAS))
    types = EventTypes(schema_set)
    return schema_set, types, DecodedChecks(types)


@pytest.fixture(scope="module")
def account(tmp_path_factory):
    schema_set = load_schema_set(write_schemas(tmp_path_factory.mktemp("account"), ACCOUNT_SCHEMAS))
    types = EventTypes(schema_set)
    return schema_set, types, DecodedChecks(types)


def test_valid_records_pass():
    checks = DecodedChecks(TYPES)
    for event_type, record in EXAMPLES.items():
        assert verdict(checks, TYPES, event_type, record) == (None, None), event_type


@pytest.mark.parametrize("domain", ["example", "account"])
def test_every_declared_constraint_is_refused_in_the_models_words(domain, account):
    schema_set, types, checks = (SCHEMA_SET, TYPES, DecodedChecks(TYPES)) if domain == "example" else account
    examples = EXAMPLES if domain == "example" else {
        t: example_record(schema_set, t, p) for t, p in ACCOUNT_PAYLOADS.items()}
    cases = 0
    for event_type, event in schema_set.current.items():
        assert verdict(checks, types, event_type, examples[event_type]) == (None, None)
        for _, path, value in constraint_violations(event.schema["fields"], named_types(event.schema)):
            record = mutate(examples[event_type], path, value)
            if record is None:
                continue
            refused_by_checks, refused_by_model = verdict(checks, types, event_type, record)
            assert refused_by_model is not None, path
            assert refused_by_checks == refused_by_model
            cases += 1
    assert cases >= (9 if domain == "example" else 4)


@pytest.mark.parametrize("field", ["entity_id", "source"])
def test_empty_envelope_fields_are_refused(field):
    record = {**EXAMPLES["OrderCreated"], field: ""}
    refused_by_checks, refused_by_model = verdict(DecodedChecks(TYPES), TYPES, "OrderCreated", record)
    assert refused_by_checks == refused_by_model is not None
    assert f"OrderCreated.{field}:" in refused_by_checks


@pytest.mark.parametrize(("description", "payload"), [
    ("in an array", {**SERVICED, "parts": [GOOD_PART, BAD_PART]}),
    ("in a map", {**SERVICED, "by_bay": {"b1": GOOD_PART, "b2": {**GOOD_PART, "weight": 0.0}}}),
    ("in a nullable record", {**SERVICED, "spare": BAD_PART}),
    ("in a union of several types", {**SERVICED, "reading": BAD_PART}),
    ("an int wider than 32 bits (a varint carries 64)", {**SERVICED, "odometer": 2**31}),
    ("an array too long", {**SERVICED, "notes": ["a", "b", "c"]}),
])
def test_nested_constraints_are_refused(fleet, description, payload):
    schema_set, types, checks = fleet
    record = example_record(schema_set, "Serviced", payload)
    refused_by_checks, refused_by_model = verdict(checks, types, "Serviced", record)
    assert refused_by_model is not None, description
    assert refused_by_checks == refused_by_model


@pytest.mark.parametrize("payload", [
    SERVICED, {**SERVICED, "spare": None, "reading": None}, {**SERVICED, "reading": 7, "parts": [], "by_bay": {}},
])
def test_nested_valid_records_pass(fleet, payload):
    schema_set, types, checks = fleet
    assert verdict(checks, types, "Serviced", example_record(schema_set, "Serviced", payload)) == (None, None)


def test_only_what_can_fail_is_checked(fleet):
    _, _, checks = fleet
    assert "payload" not in checks.sources["Parked"]
    serviced = checks.sources["Serviced"]
    for field in ("parts", "by_bay", "spare", "reading", "odometer", "notes"):
        assert repr(field) in serviced


def test_admission_refuses_with_the_models_words():
    codec = AvroCodec(SCHEMA_SET)
    record = mutate(EXAMPLES["OrderTagged"], ("payload", "tag"), "")
    refused = admit("order", b"e-1", codec.encode("OrderTagged", record), codec, checks=DecodedChecks(TYPES))
    assert isinstance(refused, Rejection) and refused.error_type == "invalid-event"
    with pytest.raises(InvalidEventError) as raised:
        TYPES.parse(record)
    assert refused.reason == str(raised.value)
