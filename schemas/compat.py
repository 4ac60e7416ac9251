"""Schema evolution policy: a changed event schema must stay FULL-compatible with every release.

Backward: the new schema reads events written with the old one (the archive stays readable).
Forward: processors still running the old schema read events written with the new one (a rolling
upgrade never sends good events to the dead-letter topic). Avro's resolution rules decide both; the
checker is Apache Avro's own, so the project and the specification cannot drift apart.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import avro.schema
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

from labelstore.schemas.catalog import SchemaSet
from labelstore.schemas.exceptions import IncompatibleSchemaError


def compatibility_problems(new: Mapping[str, Any], old: Mapping[str, Any]) -> list[str]:
    """Why ``new`` may not replace ``old``; empty when it may."""
    new_schema, old_schema = _parse(new), _parse(old)
    problems = []
    for direction, reader, writer in (
        ("new schema cannot read old events", new_schema, old_schema),
        ("old readers cannot read new events", old_schema, new_schema),
    ):
        result = ReaderWriterCompatibilityChecker().get_compatibility(reader, writer)
        if result.compatibility is not SchemaCompatibilityType.compatible:
            for message, location in zip(sorted(result.messages), sorted(result.locations)):
                problems.append(f"{direction}: {message} (at {location})")
            if not result.messages:
                problems.append(f"{direction}: {[i.value for i in result.incompatibilities]}")
    return problems


def check_schema_set(schema_set: SchemaSet) -> None:
    """Raise if a current schema breaks a released one of the same event type, or one was removed."""
    problems = []
    for released in schema_set.released.values():
        current = schema_set.current.get(released.event_type)
        label = f"{released.event_type} (released {released.fingerprint.hex()})"
        if current is None:
            problems.append(f"{label}: event type was removed; its events could no longer be read")
            continue
        problems += [f"{label}: {p}" for p in compatibility_problems(current.schema, released.schema)]
    if problems:
        raise IncompatibleSchemaError("incompatible schema change:\n  " + "\n  ".join(problems))


def _parse(schema: Mapping[str, Any]) -> avro.schema.Schema:
    return avro.schema.parse(json.dumps(schema))
