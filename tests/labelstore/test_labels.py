import json
import math
from uuid import UUID

import pytest
from pydantic import BaseModel, ValidationError

from labelstore.labels import Cause, LabelVersion, as_current, label_changes
from labelstore.rules.model import load_rules

CAUSE = Cause(event_id=UUID("0b9f6f4e-3c1e-4c57-9a53-5b8e2f0f6a11"), topic="orders.events", partition=3, offset=41)
FRAUD = next(rule for rule in load_rules() if rule.name == "fraud")


def changes(value, current):
    return label_changes("order", "order-1", [FRAUD], [value], current, event_time=10, recorded_at=20, cause=CAUSE)


@pytest.mark.parametrize("value", ["positive", True, 3, 0.5, None])
def test_the_current_label_is_the_json_form_of_the_version(value):
    version = LabelVersion(version_id=UUID(int=7), entity_type="order", entity_id="order-1", label="fraud",
                           rule_version=2, value=value, previous_value="negative", event_time=10, recorded_at=20,
                           caused_by=CAUSE)
    fields = {"version_id", "rule_version", "value", "event_time", "recorded_at", "caused_by"}
    assert as_current(version) == {k: v for k, v in json.loads(version.to_json()).items() if k in fields}


def test_a_version_only_where_the_value_changes():
    [first] = changes("negative", {})
    assert (first.value, first.previous_value) == ("negative", None)
    assert changes("negative", {"fraud": as_current(first)}) == []
    [second] = changes("positive", {"fraud": as_current(first)})
    assert (second.value, second.previous_value) == ("positive", "negative")


def test_an_abstaining_rule_emits_nothing_and_ids_are_deterministic():
    assert changes(None, {}) == []
    assert changes("negative", {})[0].version_id == changes("negative", {})[0].version_id


def test_the_cause_is_made_only_for_a_change():
    made = []

    def cause():
        made.append(1)
        return CAUSE

    def lazily(value, current):
        return label_changes("order", "order-1", [FRAUD], [value], current, event_time=10, recorded_at=20, cause=cause)

    [first] = lazily("negative", {})
    assert first.caused_by == CAUSE and len(made) == 1
    assert lazily("negative", {"fraud": as_current(first)}) == [] and len(made) == 1


def test_a_value_that_is_no_label_value_is_refused():
    from decimal import Decimal

    with pytest.raises(TypeError, match="fraud v1 gave Decimal"):
        changes(Decimal("0.5"), {})


class _PydanticCause(BaseModel):
    event_id: UUID
    topic: str
    partition: int
    offset: int


class _PydanticVersion(BaseModel):
    """How versions were written before they were dataclasses: the wire format must not move."""

    version_id: UUID
    entity_type: str
    entity_id: str
    label: str
    rule_version: int
    value: str | bool | int | float | None
    previous_value: str | bool | int | float | None
    event_time: int
    recorded_at: int
    caused_by: _PydanticCause


@pytest.mark.parametrize("value", ["positive", "", "é 🙂 \"quoted\"", True, False, 0, -7, 2**62, 0.1, 1e16, 1e-7,
                                   -0.0, 123456789.125, float("inf"), float("nan"), None])
def test_versions_are_written_as_before_and_read_back(value):
    version = LabelVersion(UUID(int=7), "order", "order-1", "fraud", 2, value, "negative", -5, 20, CAUSE)
    before = _PydanticVersion.model_validate(
        {**{f: getattr(version, f) for f in _PydanticVersion.model_fields if f != "caused_by"},
         "caused_by": _PydanticCause(event_id=CAUSE.event_id, topic=CAUSE.topic, partition=CAUSE.partition,
                                     offset=CAUSE.offset)})
    assert version.to_json() == before.model_dump_json().encode()
    back = LabelVersion.from_json(version.to_json())
    if not isinstance(value, float) or math.isfinite(value):  # infinities and NaN are written as null, as before
        assert back == version


def test_a_version_with_an_unknown_field_is_refused():
    data = json.loads(changes("negative", {})[0].to_json())
    with pytest.raises(ValidationError, match="surprise"):
        LabelVersion.from_json(json.dumps({**data, "surprise": 1}))


def test_version_ids_are_uuid5_of_the_namespace_and_the_parts():
    from random import Random
    from uuid import uuid5

    from labelstore.labels import VERSION_NAMESPACE, version_id

    rng = Random(3)
    for _ in range(500):
        parts = ("order", f"order-{rng.random()}", rng.choice(["fraud", "é"]), rng.randint(1, 9), UUID(int=rng.getrandbits(128)))
        name = "\x1f".join(str(part) for part in parts)
        assert version_id(*parts) == uuid5(VERSION_NAMESPACE, name)
        assert version_id(*parts[:4], str(parts[4])) == uuid5(VERSION_NAMESPACE, name)
