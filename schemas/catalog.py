"""The set of event schemas of a label repository: current ones and every released one.

Layout of a repository's ``schemas/`` folder:
- ``<entity_type>/<full name>.avsc``: payload records (marked ``"labelstore.role": "event"``) and
  the named types they share, one per file, so fastavro finds a reference by its full name;
- ``history/``: every released event schema, by fingerprint.

The envelope, the fields every event carries, is the library's (``envelope.avsc`` beside this module).

An event schema is the envelope with a ``payload`` field of the payload record's type. Composing it
here, instead of writing the envelope into every file, keeps the envelope in one place.

``history/`` keeps every event schema that was ever released, by fingerprint, so events written
with an older schema stay readable; ``freeze`` adds the current ones before a release.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastavro.schema import SchemaParseException, fingerprint, load_schema, to_parsing_canonical_form

from labelstore.schemas.exceptions import SchemaError

ENVELOPE_PATH = Path(__file__).parent / "envelope.avsc"
HISTORY_FOLDER = "history"
ROLE_ATTRIBUTE = "labelstore.role"
ENTITY_ATTRIBUTE = "labelstore.entity_type"
EVENT_ATTRIBUTE = "labelstore.event_type"


@dataclass(frozen=True)
class EventSchema:
    """One event type's full schema (envelope + payload) and its CRC-64-AVRO fingerprint."""

    entity_type: str
    event_type: str
    schema: Mapping[str, Any]
    fingerprint: bytes

    @property
    def name(self) -> str:
        return self.schema["name"]

    @classmethod
    def from_schema(cls, schema: Mapping[str, Any]) -> EventSchema:
        canonical = to_parsing_canonical_form(dict(schema))
        # fastavro prints the 64-bit fingerprint as little-endian bytes, the order the
        # single-object encoding puts on the wire.
        digest = bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))
        return cls(schema[ENTITY_ATTRIBUTE], schema[EVENT_ATTRIBUTE], schema, digest)


@dataclass(frozen=True)
class SchemaSet:
    """Current event schemas by event type, and every known writer schema by fingerprint."""

    current: Mapping[str, EventSchema]
    released: Mapping[bytes, EventSchema]

    def event_schema(self, event_type: str) -> EventSchema:
        try:
            return self.current[event_type]
        except KeyError:
            known = ", ".join(sorted(self.current))
            raise SchemaError(f"unknown event type {event_type!r}; known: {known}") from None

    def writers(self) -> Mapping[bytes, EventSchema]:
        """Every schema an event may have been written with: released ones and current ones."""
        return {**self.released, **{s.fingerprint: s for s in self.current.values()}}

    def entity_types(self) -> list[str]:
        return sorted({s.entity_type for s in self.current.values()})


def compose_event_schema(envelope: Mapping[str, Any], payload: Mapping[str, Any], entity_type: str) -> dict:
    """The record written to Kafka: envelope fields, then ``payload`` typed by the payload record."""
    payload_name = payload["name"]
    namespace, _, event_type = payload_name.rpartition(".")
    return {
        "type": "record",
        "name": f"{payload_name}Event",
        ENTITY_ATTRIBUTE: entity_type,
        EVENT_ATTRIBUTE: event_type,
        "fields": [*envelope["fields"], {"name": "payload", "type": dict(payload)}],
    }


def load_schema_set(schemas_dir: Path) -> SchemaSet:
    """The event schemas in a repository's ``schemas/`` folder, and its released ones."""
    envelope = _load_expanded(ENVELOPE_PATH)
    current: dict[str, EventSchema] = {}
    entity_dirs = [p for p in schemas_dir.iterdir() if p.is_dir() and p.name != HISTORY_FOLDER] if schemas_dir.is_dir() else []
    for entity_dir in sorted(entity_dirs):
        for path in sorted(entity_dir.glob("*.avsc")):
            payload = _load_expanded(path)
            if payload.get(ROLE_ATTRIBUTE) != "event":
                continue
            event = EventSchema.from_schema(compose_event_schema(envelope, payload, entity_dir.name))
            if event.event_type in current:
                raise SchemaError(f"{path}: event type {event.event_type!r} is declared twice")
            current[event.event_type] = event
    return SchemaSet(current=current, released=_load_history(schemas_dir / HISTORY_FOLDER))


def freeze(schema_set: SchemaSet, history_dir: Path) -> list[Path]:
    """Record the current schemas as released; returns the files it added."""
    history_dir.mkdir(parents=True, exist_ok=True)
    added = []
    for event in schema_set.current.values():
        path = history_dir / f"{event.fingerprint.hex()}.avsc"
        if not path.exists():
            path.write_text(json.dumps(event.schema, indent=2, sort_keys=True) + "\n")
            added.append(path)
    return added


def _load_history(history_dir: Path) -> dict[bytes, EventSchema]:
    released = {}
    for path in sorted(history_dir.glob("*.avsc")) if history_dir.is_dir() else []:
        event = EventSchema.from_schema(json.loads(path.read_text()))
        if event.fingerprint.hex() != path.stem:
            raise SchemaError(f"{path}: file name does not match the schema's fingerprint {event.fingerprint.hex()}")
        released[event.fingerprint] = event
    return released


def _load_expanded(path: Path) -> dict:
    try:
        return load_schema(str(path), _write_hint=False)
    except (SchemaParseException, ValueError, OSError) as exc:
        raise SchemaError(f"{path}: {exc}") from exc
