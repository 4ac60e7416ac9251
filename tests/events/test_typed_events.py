"""Event models generated from Avro schemas accept and refuse what Avro does, plus declared constraints.

Mutations are derived from the schemas themselves (every field: missing, null, wrong type; every
declared constraint: a value just outside it), so a new field or event type is covered without
touching this test. The example repository's events and a second domain, written here, both run
through the same checks.
"""

from __future__ import annotations

import copy
import json
import re
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from uuid import UUID

import pytest
from fastavro import parse_schema
from fastavro.validation import validate
from pydantic import ValidationError

from labelstore.events.exceptions import InvalidEventError
from labelstore.events.typed import CONSTRAINTS_ATTRIBUTE, EventTypes
from labelstore.events.wire import EventSerializer
from labelstore.schemas.catalog import SchemaSet, load_schema_set
from labelstore.schemas.codec import AvroCodec
from labelstore.schemas.exceptions import SchemaError

EXAMPLE_SCHEMAS = Path(__file__).resolve().parents[2] / "examples" / "fraud" / "schemas"
SCHEMA_SET = load_schema_set(EXAMPLE_SCHEMAS)
TYPES = EventTypes(SCHEMA_SET)
T0 = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)

ADDRESS = {"line1": "1 Main St", "city": "Springfield", "postal_code": "12345", "country": "US"}
PAYLOADS = {
    "OrderCreated": {"customer_id": "c-1", "amount_cents": 1250, "currency": "EUR", "shipping_address": ADDRESS},
    "OrderUpdated": {"shipping_address": ADDRESS, "amount_cents": 990},
    "OrderClassified": {"classification": "FRAUD", "model_score": 0.93, "model_version": "fraud-v3"},
    "OrderTagged": {"tag": "false-positive", "team": "risk"},
    "OrderUntagged": {"tag": "false-positive", "team": "risk"},
    "ChargebackReceived": {"amount_cents": 1250, "reason_code": "4837"},
    "ManualReviewDecided": {"decision": "REJECT", "reviewer": "ana", "note": "stolen card"},
    "ContentPublished": {"author_id": "u-7", "kind": "ARTICLE", "title": "Moon landing", "language": "en"},
    "ContentClassified": {"category": "news", "model_score": 0.2, "model_version": "misinfo-v1"},
    "UserReported": {"reporter_id": "u-9", "reason": "MISINFORMATION"},
    "ReviewerVerdict": {"verdict": "OK", "reviewer": "bo"},
}

# A second domain, unknown to the library: shared record, enum, array, map, uuid, date, fixed, defaults.
NS = "com.example.account"
DEVICE = {"type": "record", "name": "Device", "namespace": NS, "fields": [
    {"name": "device_id", "type": "string", CONSTRAINTS_ATTRIBUTE: {"min_length": 1}},
    {"name": "platform", "type": {"type": "enum", "name": "Platform", "symbols": ["IOS", "ANDROID", "WEB"]}},
]}
ACCOUNT_SCHEMAS = {
    f"account/{NS}.Device.avsc": DEVICE,
    f"account/{NS}.LoginSucceeded.avsc": {"type": "record", "name": "LoginSucceeded", "namespace": NS,
        "labelstore.role": "event", "fields": [
        {"name": "ip", "type": "string"},
        {"name": "device_id", "type": ["null", "string"], "default": None},
        {"name": "method", "type": {"type": "enum", "name": "AuthMethod", "symbols": ["PASSWORD", "SSO", "PASSKEY"]}},
        {"name": "scopes", "type": {"type": "array", "items": "string"}, "default": []},
        {"name": "device", "type": ["null", f"{NS}.Device"], "default": None},
        {"name": "session_id", "type": {"type": "string", "logicalType": "uuid"}},
    ]},
    f"account/{NS}.LoginFailed.avsc": {"type": "record", "name": "LoginFailed", "namespace": NS,
        "labelstore.role": "event", "fields": [
        {"name": "ip", "type": "string", CONSTRAINTS_ATTRIBUTE: {"min_length": 7, "max_length": 45}},
        {"name": "reason", "type": {"type": "enum", "name": "FailureReason", "symbols": ["BAD_PASSWORD", "LOCKED"]}},
        {"name": "attempts", "type": "int", CONSTRAINTS_ATTRIBUTE: {"ge": 1}},
        {"name": "headers", "type": {"type": "map", "values": "string"}, "default": {}},
    ]},
    f"account/{NS}.PasswordReset.avsc": {"type": "record", "name": "PasswordReset", "namespace": NS,
        "labelstore.role": "event", "fields": [
        {"name": "requested_on", "type": {"type": "int", "logicalType": "date"}},
        {"name": "expires_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "token_hash", "type": {"type": "fixed", "name": "TokenHash", "size": 8}},
        {"name": "via", "type": ["null", "string"], "default": None},
        {"name": "device", "type": f"{NS}.Device"},
        {"name": "risk", "type": "double", "default": 0.0, CONSTRAINTS_ATTRIBUTE: {"ge": 0.0, "lt": 1.0}},
    ]},
}
ACCOUNT_PAYLOADS = {
    "LoginSucceeded": {"ip": "10.0.0.1", "device_id": "d-1", "method": "SSO", "scopes": ["read", "write"],
                       "device": {"device_id": "d-1", "platform": "IOS"},
                       "session_id": UUID("12345678-1234-5678-1234-567812345678")},
    "LoginFailed": {"ip": "10.0.0.2", "reason": "LOCKED", "attempts": 3, "headers": {"user-agent": "curl"}},
    "PasswordReset": {"requested_on": date(2026, 1, 2), "expires_at": T0 + timedelta(hours=1),
                      "token_hash": b"12345678", "via": "email", "device": {"device_id": "d-2", "platform": "WEB"},
                      "risk": 0.5},
}


def write_schemas(folder: Path, files: dict[str, dict]) -> Path:
    for relative, schema in files.items():
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_text(json.dumps(schema, indent=2))
    return folder


def example_record(schema_set: SchemaSet, event_type: str, payload: dict) -> dict:
    """A record as a decoded Avro event would hold it."""
    return {"event_id": UUID(int=1), "entity_type": schema_set.current[event_type].entity_type,
            "entity_id": "e-1", "event_type": event_type, "event_time": T0, "source": "tests", "payload": payload}


# --- mutations derived from the schema ------------------------------------------------------------

MISSING = object()
# Creating an event in Python fills these in (a fresh id; the types its model fixes); a record read
# from Kafka always carries them. Everything else must agree with Avro exactly.
FILLED_BY_THE_MODEL = {("event_id",), ("entity_type",), ("event_type",)}
WRONG_VALUE = {"string": 42, "long": "42", "int": "42", "double": "0.5", "float": "0.5", "boolean": "yes",
               "bytes": "text", "fixed": "text", "enum": "NOT_A_SYMBOL", "record": "a string", "array": "a string",
               "map": "a string", "date": 1.5, "timestamp-millis": "2026-01-01T00:00:00+00:00"}
# A value just outside each constraint (pattern: no example pattern matches "!").
VIOLATION = {"min_length": lambda n: "x" * (n - 1), "max_length": lambda n: "x" * (n + 1), "ge": lambda b: b - 1,
             "gt": lambda b: b, "le": lambda b: b + 1, "lt": lambda b: b, "pattern": lambda p: "!"}


def named_types(schema) -> dict[str, dict]:
    """Named types by full name: fastavro inlines one where it first occurs, then refers to it."""
    found = {}
    if isinstance(schema, list):
        for item in schema:
            found.update(named_types(item))
    elif isinstance(schema, dict):
        if schema.get("type") in ("record", "enum", "fixed"):
            found[schema["name"]] = schema
        for value in schema.values():
            found.update(named_types(value))
    return found


def _resolve(avro_type, named):
    inner = [t for t in avro_type if t != "null"][0] if isinstance(avro_type, list) else avro_type
    return named.get(inner, inner) if isinstance(inner, str) else inner


def _kind(avro_type) -> str:
    return (avro_type.get("logicalType") or avro_type["type"]) if isinstance(avro_type, dict) else avro_type


def field_mutations(fields: list[dict], named: dict, path: tuple[str, ...] = ()):
    """(description, path, value or MISSING) for every way each field can be wrong."""
    for field in fields:
        here, name = (*path, field["name"]), ".".join((*path, field["name"]))
        nullable = isinstance(field["type"], list) and "null" in field["type"]
        if not nullable and "default" not in field:
            yield f"{name} missing", here, MISSING
            yield f"{name} null", here, None
        inner = _resolve(field["type"], named)
        kind = _kind(inner)
        if kind in WRONG_VALUE:
            yield f"{name} wrong type ({kind})", here, WRONG_VALUE[kind]
        if kind in ("array", "map"):
            item_kind = _kind(_resolve(inner["items" if kind == "array" else "values"], named))
            if item_kind in WRONG_VALUE:
                bad = WRONG_VALUE[item_kind]
                yield f"{name} wrong item ({item_kind})", here, [bad] if kind == "array" else {"k": bad}
        if kind == "record":
            yield from field_mutations(inner["fields"], named, here)


def constraint_violations(fields: list[dict], named: dict, path: tuple[str, ...] = ()):
    for field in fields:
        here = (*path, field["name"])
        for key, bound in field.get(CONSTRAINTS_ATTRIBUTE, {}).items():
            yield f"{'.'.join(here)} {key} {bound}", here, VIOLATION[key](bound)
        inner = _resolve(field["type"], named)
        if _kind(inner) == "record":
            yield from constraint_violations(inner["fields"], named, here)


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


def avro_accepts(schema_set: SchemaSet, event_type: str, record: dict) -> bool:
    return validate(record, parse_schema(dict(schema_set.current[event_type].schema)), raise_errors=False)


def model_accepts(types: EventTypes, event_type: str, record: dict) -> bool:
    try:
        types.model(event_type).model_validate(record)
    except ValidationError:
        return False
    return True


def disagreements(schema_set: SchemaSet, types: EventTypes, examples: dict[str, dict]) -> list[str]:
    """Every mutation of every example on which Avro and the model do not both refuse."""
    found = []
    for event_type, event in schema_set.current.items():
        fields = event.schema["fields"]
        for description, path, value in field_mutations(fields, named_types(event.schema)):
            record = mutate(examples[event_type], path, value)
            if record is None or (value is MISSING and path in FILLED_BY_THE_MODEL):
                continue
            verdicts = (avro_accepts(schema_set, event_type, record), model_accepts(types, event_type, record))
            if verdicts != (False, False):
                found.append(f"{event_type}: {description}: (avro, model) accept = {verdicts}")
    return found


EXAMPLES = {event_type: example_record(SCHEMA_SET, event_type, payload) for event_type, payload in PAYLOADS.items()}


def cases():
    for event_type, schema in sorted(SCHEMA_SET.current.items()):
        for description, path, value in field_mutations(schema.schema["fields"], named_types(schema.schema)):
            yield pytest.param(event_type, path, value, id=f"{event_type}:{description}")


def violations():
    for event_type, schema in sorted(SCHEMA_SET.current.items()):
        for description, path, value in constraint_violations(schema.schema["fields"], named_types(schema.schema)):
            yield pytest.param(event_type, path, value, id=f"{event_type}:{description}")


# --- the example repository ------------------------------------------------------------------------

def test_every_event_type_has_a_model_and_an_example():
    assert TYPES.names == sorted(SCHEMA_SET.current)
    assert set(PAYLOADS) == set(SCHEMA_SET.current), "add an example payload for each event type"


def test_constraint_attributes_leave_fingerprints_unchanged():
    assert all(event.fingerprint in SCHEMA_SET.released for event in SCHEMA_SET.current.values())


@pytest.mark.parametrize("event_type", sorted(PAYLOADS))
def test_model_fields_are_the_avro_fields(event_type):
    def avro_names(fields, named):
        return {f["name"]: avro_names(_record_fields(f["type"], named), named) for f in fields}

    def model_names(model):
        return {name: model_names(_model_of(info.annotation)) for name, info in model.model_fields.items()} if model else {}

    schema = SCHEMA_SET.current[event_type].schema
    model = TYPES.model(event_type)
    assert model.__name__ == event_type
    assert model_names(model) == avro_names(schema["fields"], named_types(schema))


def _record_fields(avro_type, named) -> list:
    inner = _resolve(avro_type, named)
    return inner["fields"] if isinstance(inner, dict) and inner.get("type") == "record" else []


def _model_of(annotation):
    from pydantic import BaseModel

    for candidate in (annotation, *getattr(annotation, "__args__", ())):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


@pytest.mark.parametrize("event_type", sorted(PAYLOADS))
def test_valid_examples_pass_both(event_type):
    record = EXAMPLES[event_type]
    assert avro_accepts(SCHEMA_SET, event_type, record) and model_accepts(TYPES, event_type, record)


@pytest.mark.parametrize(("event_type", "path", "value"), list(cases()))
def test_mutations_are_rejected_by_both(event_type, path, value):
    record = mutate(EXAMPLES[event_type], path, value)
    if record is None:
        pytest.skip("the example has no value at this path's parent")
    if value is MISSING and path in FILLED_BY_THE_MODEL:
        filled = TYPES.model(event_type).model_validate(record)
        assert not avro_accepts(SCHEMA_SET, event_type, record)
        assert filled.event_id != EXAMPLES[event_type]["event_id"] or path != ("event_id",)
        assert (filled.entity_type, filled.event_type) == (EXAMPLES[event_type]["entity_type"], event_type)
        return
    assert (avro_accepts(SCHEMA_SET, event_type, record), model_accepts(TYPES, event_type, record)) == (False, False)


@pytest.mark.parametrize(("event_type", "path", "value"), list(violations()))
def test_constraint_violations_name_the_field(event_type, path, value):
    record = mutate(EXAMPLES[event_type], path, value)
    assert avro_accepts(SCHEMA_SET, event_type, record), "Avro cannot say this: only the model refuses it"
    with pytest.raises(InvalidEventError) as raised:
        TYPES.parse(record)
    lines = str(raised.value).splitlines()
    assert lines[0] == f"invalid {event_type} event:"
    assert len(lines) == 2 and lines[1].startswith(f"  {event_type}.{'.'.join(path)}: ")
    assert lines[1].endswith(f"(got {value!r})")


NON_EMPTY = {"min_length": 1}
SCORE = {"ge": 0.0, "le": 1.0}


def test_the_example_declares_its_domain_rules():
    declared = {
        spec.full_name.rpartition(".")[2]: {f.name: dict(f.constraints) for f in spec.fields if f.constraints}
        for spec in TYPES.catalog.records.values()
    }
    assert declared == {
        "Address": {"line1": NON_EMPTY, "city": NON_EMPTY, "country": {"pattern": "^[A-Z]{2}$"}},
        "OrderCreated": {"customer_id": NON_EMPTY, "amount_cents": {"ge": 0}, "currency": {"pattern": "^[A-Z]{3}$"}},
        "OrderUpdated": {"amount_cents": {"ge": 0}},
        "OrderClassified": {"model_score": SCORE, "model_version": NON_EMPTY},
        "OrderTagged": {"tag": NON_EMPTY, "team": NON_EMPTY},
        "OrderUntagged": {"tag": NON_EMPTY, "team": NON_EMPTY},
        "ChargebackReceived": {"amount_cents": {"ge": 0}, "reason_code": NON_EMPTY},
        "ManualReviewDecided": {"reviewer": NON_EMPTY},
        "ContentPublished": {"author_id": NON_EMPTY, "language": NON_EMPTY},
        "ContentClassified": {"category": NON_EMPTY, "model_score": SCORE, "model_version": NON_EMPTY},
        "UserReported": {"reporter_id": NON_EMPTY},
        "ReviewerVerdict": {"reviewer": NON_EMPTY},
    }


def test_accepted_by_both():
    record = mutate(EXAMPLES["OrderClassified"], ("payload", "model_score"), 1)  # an integer for a double
    assert avro_accepts(SCHEMA_SET, "OrderClassified", record) and model_accepts(TYPES, "OrderClassified", record)


@pytest.mark.parametrize(
    ("description", "edit"),
    [
        ("unknown field", lambda r: {**r, "priority": 1}),
        ("unknown payload field", lambda r: {**r, "payload": {**r["payload"], "priority": 1}}),
        ("empty entity_id", lambda r: {**r, "entity_id": ""}),
        ("empty source", lambda r: {**r, "source": ""}),
        ("naive event_time", lambda r: {**r, "event_time": datetime(2026, 1, 1)}),
        ("event_time as epoch milliseconds", lambda r: {**r, "event_time": 1767225600000}),
        ("score above 1", lambda r: {**r, "payload": {**r["payload"], "model_score": 1.5}}),
    ],
)
def test_models_are_stricter_only_where_avro_cannot_say_it(description, edit):
    record = edit(EXAMPLES["OrderClassified"])
    assert avro_accepts(SCHEMA_SET, "OrderClassified", record) and not model_accepts(TYPES, "OrderClassified", record)


def test_rejections_read_well():
    record = mutate(EXAMPLES["OrderClassified"], ("payload", "model_score"), "high")
    with pytest.raises(InvalidEventError) as raised:
        TYPES.parse(record)
    assert str(raised.value) == (
        "invalid OrderClassified event:\n  OrderClassified.payload.model_score: Input should be a valid number (got 'high')"
    )
    with pytest.raises(InvalidEventError, match=r"^event_type: 'OrderShipped' is not an event type; known: ChargebackReceived, "):
        TYPES.parse({**EXAMPLES["OrderCreated"], "event_type": "OrderShipped"})
    with pytest.raises(InvalidEventError, match="is not an event type"):
        TYPES.model(None)


@pytest.mark.parametrize("event_type", sorted(PAYLOADS))
def test_create_round_trips_through_the_codec(event_type):
    berlin = timezone(timedelta(hours=1))
    event = TYPES.create(event_type, entity_id="e-1", event_time=datetime(2026, 1, 2, 4, 4, 5, 678912, tzinfo=berlin),
                         payload=PAYLOADS[event_type])
    assert (type(event), event.source, event.event_time) == (TYPES.model(event_type), "sdk", T0)
    codec = AvroCodec(SCHEMA_SET)
    record = event.to_record()
    decoded = codec.decode(codec.encode(event_type, record))
    assert decoded.record == record
    assert TYPES.parse(decoded.record) == event
    serializer = EventSerializer(codec, TYPES)
    assert serializer.decode(serializer.encode(event)) == event


def test_parse_passes_its_own_events_through_and_checks_others():
    event = TYPES.parse(EXAMPLES["OrderCreated"])
    assert TYPES.parse(event) is event
    other = EventTypes(SCHEMA_SET).parse(EXAMPLES["OrderCreated"])
    assert type(TYPES.parse(other)) is TYPES.model("OrderCreated") and TYPES.parse(other) == event
    with pytest.raises(InvalidEventError, match="a mapping or an Event"):
        TYPES.parse(["not", "an", "event"])


# --- a second domain -------------------------------------------------------------------------------

@pytest.fixture
def account(tmp_path) -> tuple[SchemaSet, EventTypes]:
    schema_set = load_schema_set(write_schemas(tmp_path / "schemas", ACCOUNT_SCHEMAS))
    return schema_set, EventTypes(schema_set)


def test_a_new_domain_gets_typed_events(account):
    schema_set, types = account
    assert types.names == ["LoginFailed", "LoginSucceeded", "PasswordReset"]
    login = types.create("LoginSucceeded", entity_id="acc-1", event_time=T0,
                         payload={"ip": "10.0.0.1", "method": "PASSWORD", "session_id": str(UUID(int=7))})
    assert (login.entity_type, login.payload.device_id, login.payload.scopes) == ("account", None, [])
    assert login.payload.session_id == UUID(int=7)
    def payload_record(event_type, field):
        return _model_of(types.model(event_type).model_fields["payload"].annotation.model_fields[field].annotation)

    # One model per named type, however many events use it.
    assert payload_record("PasswordReset", "device") is payload_record("LoginSucceeded", "device")
    assert payload_record("PasswordReset", "device").__name__ == "Device"
    with pytest.raises(InvalidEventError, match="known: LoginFailed, LoginSucceeded, PasswordReset$"):
        types.model("OrderCreated")
    # A service's JSON carries dates as ISO strings; fastavro writes them too.
    reset = types.create("PasswordReset", entity_id="acc-1", event_time=T0,
                         payload={**ACCOUNT_PAYLOADS["PasswordReset"], "requested_on": "2026-01-02"})
    assert reset.payload.requested_on == date(2026, 1, 2)


def test_a_new_domain_round_trips_through_the_codec(account):
    schema_set, types = account
    codec = AvroCodec(schema_set)
    for event_type, payload in ACCOUNT_PAYLOADS.items():
        event = types.create(event_type, entity_id="acc-1", event_time=T0, payload=payload, source="auth")
        decoded = codec.decode(codec.encode(event_type, event.to_record()))
        assert decoded.record == event.to_record()
        assert types.parse(decoded.record) == event


def test_a_new_domain_mirrors_avro(account):
    schema_set, types = account
    examples = {t: example_record(schema_set, t, p) for t, p in ACCOUNT_PAYLOADS.items()}
    for event_type, record in examples.items():
        assert avro_accepts(schema_set, event_type, record) and model_accepts(types, event_type, record), event_type
    assert disagreements(schema_set, types, examples) == []
    for event_type, event in schema_set.current.items():
        for _, path, value in constraint_violations(event.schema["fields"], named_types(event.schema)):
            record = mutate(examples[event_type], path, value)
            assert avro_accepts(schema_set, event_type, record) and not model_accepts(types, event_type, record), path


@pytest.mark.parametrize(
    ("constraints", "message"),
    [
        ({"minimum": 1}, 'LoginFailed.attempts: unknown key(s) minimum in "labelstore.constraints"; '
                         "allowed: min_length, max_length, pattern, ge, gt, le, lt"),
        ({"pattern": "^[0-9]+$"}, "LoginFailed.attempts: constraint 'pattern' does not apply to a field of type int"),
        ({"ge": "1"}, "LoginFailed.attempts: constraint 'ge' has an invalid value '1'"),
        ([1], 'LoginFailed.attempts: "labelstore.constraints" must be an object'),
    ],
)
def test_malformed_constraints_are_schema_errors(tmp_path, constraints, message):
    files = copy.deepcopy(ACCOUNT_SCHEMAS)
    failed = files[f"account/{NS}.LoginFailed.avsc"]
    next(f for f in failed["fields"] if f["name"] == "attempts")[CONSTRAINTS_ATTRIBUTE] = constraints
    schema_set = load_schema_set(write_schemas(tmp_path, files))
    with pytest.raises(SchemaError, match=re.escape(f"{NS}.{message}")):
        EventTypes(schema_set)


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ({"name": "amount", "type": {"type": "bytes", "logicalType": "decimal", "precision": 4, "scale": 2}},
         "LoginFailed.amount: logical type 'decimal' on 'bytes' is not supported"),
        ({"name": "previous", "type": ["null", f"{NS}.LoginFailed"], "default": None},
         "LoginFailed.previous: record com.example.account.LoginFailed refers to itself"),
        ({"name": "_secret", "type": "string"}, "LoginFailed._secret: a field name cannot start with '_'"),
        ({"name": "tries", "type": "int", "default": 0, CONSTRAINTS_ATTRIBUTE: {"ge": 1}},
         "LoginFailed.tries: the default 0 is not valid"),
    ],
)
def test_schemas_the_models_cannot_hold_are_schema_errors(tmp_path, field, message):
    files = copy.deepcopy(ACCOUNT_SCHEMAS)
    files[f"account/{NS}.LoginFailed.avsc"]["fields"].append(field)
    schema_set = load_schema_set(write_schemas(tmp_path, files))
    with pytest.raises(SchemaError, match=re.escape(f"{NS}.{message}")):
        EventTypes(schema_set)
