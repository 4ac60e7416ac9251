"""A generated module's classes are the runtime models written down: same fields, same verdicts."""

from __future__ import annotations

import copy
import importlib.util
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from labelstore.events.codegen import render_module
from labelstore.events.typed import EventTypes
from labelstore.schemas.catalog import SchemaSet, load_schema_set
from labelstore.schemas.codec import AvroCodec
from labelstore.schemas.exceptions import SchemaError
from tests.events.test_typed_events import (
    ACCOUNT_PAYLOADS,
    ACCOUNT_SCHEMAS,
    EXAMPLES,
    MISSING,
    NS,
    SCHEMA_SET,
    T0,
    TYPES,
    constraint_violations,
    example_record,
    field_mutations,
    mutate,
    named_types,
    write_schemas,
)


def generated_module(schema_set: SchemaSet, folder: Path, name: str):
    path = folder / f"{name}.py"
    path.write_text(render_module(schema_set))
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # pydantic resolves the classes' annotations in their module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[name]
    return module


def verdict(model, record: dict) -> str:
    """'ok', or the fields the model refuses and why: both kinds of model must say the same."""
    try:
        model.model_validate(record)
    except ValidationError as exc:
        return "; ".join(f"{error['loc']}: {error['msg']}" for error in exc.errors(include_url=False))
    return "ok"


def records_to_try(schema_set: SchemaSet, examples: dict[str, dict]):
    for event_type, event in schema_set.current.items():
        named = named_types(event.schema)
        changes = [*field_mutations(event.schema["fields"], named), *constraint_violations(event.schema["fields"], named)]
        yield event_type, "the example", examples[event_type]
        for description, path, value in changes:
            record = mutate(examples[event_type], path, value)
            if record is not None:
                yield event_type, description, record
        yield event_type, "without optional fields", {
            **examples[event_type], "event_id": MISSING, "payload": {
                k: v for k, v in examples[event_type]["payload"].items() if not _has_default(event.schema, k)}}


def _has_default(schema, field_name: str) -> bool:
    payload = next(f["type"] for f in schema["fields"] if f["name"] == "payload")
    return any(f["name"] == field_name and "default" in f for f in payload["fields"])


def assert_same_models(schema_set: SchemaSet, types: EventTypes, module, examples: dict[str, dict]) -> None:
    assert list(module.EVENT_MODELS) == types.names
    for event_type in types.names:
        generated, runtime = module.EVENT_MODELS[event_type], types.model(event_type)
        assert generated.__name__ == event_type
        # Titles, types, constraints, defaults and descriptions, nested records included.
        assert generated.model_json_schema() == runtime.model_json_schema()
    for event_type, description, record in records_to_try(schema_set, examples):
        record = {k: v for k, v in record.items() if v is not MISSING}
        generated, runtime = module.EVENT_MODELS[event_type], types.model(event_type)
        assert verdict(generated, record) == verdict(runtime, record), f"{event_type}: {description}"


def test_the_example_module_matches_the_runtime_models(tmp_path):
    module = generated_module(SCHEMA_SET, tmp_path, "fraud_events")
    assert_same_models(SCHEMA_SET, TYPES, module, EXAMPLES)


def test_a_generated_event_is_published_as_the_runtime_one(tmp_path):
    module = generated_module(SCHEMA_SET, tmp_path, "fraud_events_publish")
    event = module.OrderCreated(entity_id="o-1", event_time=T0, source="shop", payload=EXAMPLES["OrderCreated"]["payload"])
    parsed = TYPES.parse(event)
    assert type(parsed) is TYPES.model("OrderCreated") and parsed.to_record() == event.to_record()
    codec = AvroCodec(SCHEMA_SET)
    assert codec.decode(codec.encode("OrderCreated", event.to_record())).record == event.to_record()


def test_a_new_domain_module_matches_its_runtime_models(tmp_path):
    schema_set = load_schema_set(write_schemas(tmp_path / "schemas", ACCOUNT_SCHEMAS))
    module = generated_module(schema_set, tmp_path, "account_events")
    examples = {t: example_record(schema_set, t, p) for t, p in ACCOUNT_PAYLOADS.items()}
    assert_same_models(schema_set, EventTypes(schema_set), module, examples)
    assert module.LoginSucceededPayload.model_fields["device"].annotation == module.Device | None


def test_defaults_of_every_kind_are_written_as_values(tmp_path):
    files = copy.deepcopy(ACCOUNT_SCHEMAS)
    files[f"account/{NS}.LoginFailed.avsc"]["fields"] += [
        {"name": "since", "type": {"type": "long", "logicalType": "timestamp-millis"}, "default": 1767225600000},
        {"name": "on", "type": {"type": "int", "logicalType": "date"}, "default": 20454},
        {"name": "trace", "type": {"type": "string", "logicalType": "uuid"}, "default": "12345678-1234-5678-1234-567812345678"},
        {"name": "salt", "type": "bytes", "default": "\u00ff\u0000"},
        {"name": "device", "type": f"{NS}.Device", "default": {"device_id": "unknown", "platform": "WEB"},
         "doc": 'The device, if the "client" sent one.'},
        {"name": "weights", "type": {"type": "map", "values": "double"}, "default": {"a": 0.5}},
    ]
    schema_set = load_schema_set(write_schemas(tmp_path / "schemas", files))
    types, module = EventTypes(schema_set), generated_module(schema_set, tmp_path, "account_defaults")
    payload = {"ip": "10.0.0.9", "reason": "LOCKED", "attempts": 1}
    runtime = types.model("LoginFailed").model_fields["payload"].annotation.model_validate(payload)
    generated = module.LoginFailedPayload.model_validate(payload)
    assert runtime.model_dump() == generated.model_dump()
    assert runtime.since.isoformat() == "2026-01-01T00:00:00+00:00" and runtime.on.isoformat() == "2026-01-01"
    assert (runtime.salt, runtime.device.device_id, runtime.weights) == (b"\xff\x00", "unknown", {"a": 0.5})
    codec = AvroCodec(schema_set)
    event = types.create("LoginFailed", entity_id="acc-1", event_time=T0, payload=payload)
    assert types.parse(codec.decode(codec.encode("LoginFailed", event.to_record())).record) == event


@pytest.mark.parametrize("name", ["class", "str", "Field"])
def test_a_field_name_the_module_cannot_hold_is_refused(tmp_path, name):
    files = copy.deepcopy(ACCOUNT_SCHEMAS)
    files[f"account/{NS}.LoginFailed.avsc"]["fields"].append({"name": name, "type": "string", "default": ""})
    schema_set = load_schema_set(write_schemas(tmp_path, files))
    EventTypes(schema_set)  # the runtime models have no such limit
    with pytest.raises(SchemaError, match=f"{NS}.LoginFailed.{name}: a generated class cannot have a field named"):
        render_module(schema_set)


def test_records_with_the_same_short_name_get_distinct_classes(tmp_path):
    files = copy.deepcopy(ACCOUNT_SCHEMAS)
    other = {**copy.deepcopy(files[f"account/{NS}.Device.avsc"]), "namespace": "com.example.legacy"}
    other["fields"][1]["type"]["name"] = "LegacyPlatform"
    files["account/com.example.legacy.Device.avsc"] = other
    files[f"account/{NS}.LoginFailed.avsc"]["fields"].append(
        {"name": "legacy_device", "type": ["null", "com.example.legacy.Device"], "default": None})
    schema_set = load_schema_set(write_schemas(tmp_path / "schemas", files))
    module = generated_module(schema_set, tmp_path, "account_clash")
    names = {spec.class_name for spec in EventTypes(schema_set).catalog.records.values()}
    assert {"ComExampleAccountDevice", "ComExampleLegacyDevice"} <= names
    assert module.LoginFailedPayload.model_fields["legacy_device"].annotation == module.ComExampleLegacyDevice | None
