"""The pydantic models and the Avro schemas accept and reject the same records.

Mutations are derived from the Avro schema itself (every field: missing, null, wrong type), so a
new field or event type is covered without touching this test.
"""

from __future__ import annotations

import copy
from datetime import datetime

import pytest
from fastavro import parse_schema
from fastavro.validation import validate
from pydantic import ValidationError

from labelstore.events.demo import generate
from labelstore.events.models import EVENT_MODELS
from labelstore.schemas.catalog import load_schema_set

SCHEMAS = load_schema_set().current
EXAMPLES = {}
for _event in generate(400, 200, seed=1):
    EXAMPLES.setdefault(_event.event_type, _event.to_record())

# Creating an event in Python fills these in (a fresh id; the types its class fixes); a record
# read from Kafka always carries them. Everything else must agree with Avro exactly.
FILLED_BY_THE_MODEL = {("event_id",), ("entity_type",), ("event_type",)}
WRONG_VALUE = {"string": 42, "long": "42", "int": "42", "double": "0.5", "enum": "NOT_A_SYMBOL", "record": "a string"}


def avro_accepts(event_type: str, record: dict) -> bool:
    return validate(record, parse_schema(dict(SCHEMAS[event_type].schema)), raise_errors=False)


def model_accepts(event_type: str, record: dict) -> bool:
    try:
        EVENT_MODELS[event_type].model_validate(record)
    except ValidationError:
        return False
    return True


def _kind(avro_type) -> str:
    if isinstance(avro_type, dict):
        return avro_type.get("logicalType") or avro_type["type"]
    return avro_type


def field_mutations(fields: list[dict], path: tuple[str, ...] = ()):
    """(description, path, value or MISSING) for every way each field can be wrong."""
    for field in fields:
        here = (*path, field["name"])
        avro_type = field["type"]
        nullable = isinstance(avro_type, list) and "null" in avro_type
        if not nullable and "default" not in field:
            yield f"{'.'.join(here)} missing", here, MISSING
            yield f"{'.'.join(here)} null", here, None
        inner = [t for t in avro_type if t != "null"][0] if isinstance(avro_type, list) else avro_type
        kind = _kind(inner)
        if kind in WRONG_VALUE:
            yield f"{'.'.join(here)} wrong type ({kind})", here, WRONG_VALUE[kind]
        if kind == "record" and isinstance(inner, dict):
            yield from field_mutations(inner["fields"], here)


MISSING = object()


def mutate(record: dict, path: tuple[str, ...], value) -> dict | None:
    changed = copy.deepcopy(record)
    target = changed
    for key in path[:-1]:
        target = target.get(key)
        if not isinstance(target, dict):
            return None  # an optional parent is absent in this example
    if value is MISSING:
        target.pop(path[-1], None)
    else:
        target[path[-1]] = value
    return changed


def cases():
    for event_type, schema in SCHEMAS.items():
        for description, path, value in field_mutations(schema.schema["fields"]):
            yield pytest.param(event_type, path, value, id=f"{event_type}:{description}")


def test_every_event_type_has_a_model_and_an_example():
    assert set(EVENT_MODELS) == set(SCHEMAS)
    assert set(EXAMPLES) == set(SCHEMAS), "the demo generator should produce every event type"


@pytest.mark.parametrize("event_type", sorted(SCHEMAS))
def test_model_fields_are_the_avro_fields(event_type):
    def avro_names(fields):
        return {f["name"]: avro_names(_record_fields(f["type"])) for f in fields}

    def model_names(model):
        if model is None:
            return {}
        return {name: model_names(_model_of(info.annotation)) for name, info in model.model_fields.items()}

    assert model_names(EVENT_MODELS[event_type]) == avro_names(SCHEMAS[event_type].schema["fields"])


def _record_fields(avro_type) -> list:
    inner = [t for t in avro_type if t != "null"][0] if isinstance(avro_type, list) else avro_type
    return inner["fields"] if isinstance(inner, dict) and inner.get("type") == "record" else []


def _model_of(annotation):
    from pydantic import BaseModel

    for candidate in (annotation, *getattr(annotation, "__args__", ())):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


@pytest.mark.parametrize("event_type", sorted(SCHEMAS))
def test_valid_examples_pass_both(event_type):
    record = EXAMPLES[event_type]
    assert avro_accepts(event_type, record) and model_accepts(event_type, record)


@pytest.mark.parametrize(("event_type", "path", "value"), list(cases()))
def test_mutations_are_rejected_by_both(event_type, path, value):
    record = mutate(EXAMPLES[event_type], path, value)
    if record is None:
        pytest.skip("the example has no value at this path's parent")
    if value is MISSING and path in FILLED_BY_THE_MODEL:
        filled = EVENT_MODELS[event_type].model_validate(record)
        assert not avro_accepts(event_type, record)
        assert filled.event_id != EXAMPLES[event_type]["event_id"] or path != ("event_id",)
        assert (filled.entity_type, filled.event_type) == (EXAMPLES[event_type]["entity_type"], event_type)
        return
    assert (avro_accepts(event_type, record), model_accepts(event_type, record)) == (False, False)


@pytest.mark.parametrize(
    ("description", "edit"),
    [
        ("integer for a double", lambda r: {**r, "payload": {**r["payload"], "model_score": 1}}),
    ],
)
def test_accepted_by_both(description, edit):
    record = edit(EXAMPLES["OrderClassified"])
    assert avro_accepts("OrderClassified", record) and model_accepts("OrderClassified", record)


@pytest.mark.parametrize(
    ("description", "edit"),
    [
        ("unknown field", lambda r: {**r, "priority": 1}),
        ("empty entity_id", lambda r: {**r, "entity_id": ""}),
        ("naive event_time", lambda r: {**r, "event_time": datetime(2026, 1, 1)}),
        ("score above 1", lambda r: {**r, "payload": {**r["payload"], "model_score": 1.5}}),
    ],
)
def test_models_are_stricter_only_where_avro_cannot_say_it(description, edit):
    record = edit(EXAMPLES["OrderClassified"])
    assert avro_accepts("OrderClassified", record) and not model_accepts("OrderClassified", record)


def test_round_trip_through_avro_equals_the_model():
    from labelstore.events.wire import EventSerializer

    serializer = EventSerializer()
    for record in EXAMPLES.values():
        model = EVENT_MODELS[record["event_type"]].model_validate(record)
        assert serializer.decode(serializer.encode(model)) == model
