import copy

import pytest

from tests.fraud_example import EXAMPLE
from labelstore.schemas.catalog import EventSchema, SchemaSet, load_schema_set
from labelstore.schemas.compat import check_schema_set, compatibility_problems
from labelstore.schemas.exceptions import IncompatibleSchemaError


@pytest.fixture(scope="module")
def tagged():
    return load_schema_set(EXAMPLE.schemas_dir).current["OrderTagged"].schema


def _edit_payload(schema, edit):
    changed = copy.deepcopy(dict(schema))
    payload = changed["fields"][-1]["type"]
    payload["fields"] = edit(payload["fields"])
    return changed


def test_added_optional_field_is_compatible(tagged):
    added = _edit_payload(tagged, lambda fields: [*fields, {"name": "note", "type": ["null", "string"], "default": None}])
    assert compatibility_problems(added, tagged) == []


def test_removed_required_field_is_refused(tagged):
    removed = _edit_payload(tagged, lambda fields: [f for f in fields if f["name"] != "team"])
    problems = compatibility_problems(removed, tagged)
    assert problems and "old readers cannot read new events" in problems[0] and "team" in problems[0]


def test_added_required_field_is_refused(tagged):
    added = _edit_payload(tagged, lambda fields: [*fields, {"name": "severity", "type": "int"}])
    problems = compatibility_problems(added, tagged)
    assert any("new schema cannot read old events" in p and "severity" in p for p in problems)


def test_changed_type_is_refused(tagged):
    retyped = _edit_payload(tagged, lambda fields: [{**f, "type": "int"} if f["name"] == "tag" else f for f in fields])
    assert compatibility_problems(retyped, tagged)


def test_schema_set_check_names_the_event_type(tagged):
    removed = EventSchema.from_schema(_edit_payload(tagged, lambda fields: fields[:1]))
    released = EventSchema.from_schema(tagged)
    schema_set = SchemaSet(current={"OrderTagged": removed}, released={released.fingerprint: released})
    with pytest.raises(IncompatibleSchemaError, match=r"OrderTagged \(released [0-9a-f]{16}\).*team"):
        check_schema_set(schema_set)


def test_removed_event_type_is_refused(tagged):
    released = EventSchema.from_schema(tagged)
    with pytest.raises(IncompatibleSchemaError, match="was removed"):
        check_schema_set(SchemaSet(current={}, released={released.fingerprint: released}))


def test_the_shipped_schemas_are_compatible_with_every_release():
    schema_set = load_schema_set(EXAMPLE.schemas_dir)
    assert schema_set.released, "schemas/history is empty: run `labelstore schemas freeze`"
    check_schema_set(schema_set)
    unreleased = [s.event_type for s in schema_set.current.values() if s.fingerprint not in schema_set.released]
    assert not unreleased, f"schemas changed without `labelstore schemas freeze`: {unreleased}"
