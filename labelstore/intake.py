"""Which records of an entity topic are events: one decision for the processor and the archive.

The processor sends a rejected record to the dead-letter topic; the materializer leaves it out of
the events archive. Both use ``admit``, so the offline re-fold sees exactly the events the
processor folded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING
from weakref import WeakKeyDictionary

from labelstore.events.exceptions import InvalidEventError
from labelstore.schemas.codec import AvroCodec, DecodedEvent
from labelstore.schemas.exceptions import DecodeError

if TYPE_CHECKING:
    from labelstore.events.typed import EventTypes


# Rejections a worker may owe to its own copy of the repository being older than the writer's:
# it looks at the repository again before it dead-letters such a record.
UNKNOWN_TO_THIS_WORKER = frozenset({"UnknownSchemaError", "UnknownEventTypeError", "unfoldable-event"})
_EVENT_TYPES: WeakKeyDictionary[AvroCodec, EventTypes] = WeakKeyDictionary()


def event_types_of(codec: AvroCodec) -> EventTypes:
    """The typed events of a codec's schemas, built once per codec (it builds a model per event type)."""
    if codec not in _EVENT_TYPES:
        from labelstore.events.typed import EventTypes

        _EVENT_TYPES[codec] = EventTypes(codec.schema_set)
    return _EVENT_TYPES[codec]


@dataclass(frozen=True)
class Rejection:
    error_type: str
    reason: str


def admit(entity_type: str, key: bytes | None, value: bytes | None, codec: AvroCodec, *,
          event_types: EventTypes | None = None, foldable: frozenset[str] | None = None) -> DecodedEvent | Rejection:
    """The decoded event, or why the record on ``entity_type``'s topic is not one.

    With ``event_types``, the payload must also pass the checks Avro cannot express (the
    constraints the repository's schemas declare), as the publishing SDK's do."""
    if not key:
        return Rejection("missing-key", "message has no key; events must be keyed by entity_id")
    if value is None:
        return Rejection("missing-value", "message has no value")
    try:
        decoded = codec.decode(value)
    except DecodeError as exc:
        return Rejection(type(exc).__name__, str(exc))
    if decoded.entity_type != entity_type:
        return Rejection("wrong-entity-type", f"a {decoded.entity_type} event on the {entity_type} topic")
    if decoded.record["entity_id"].encode() != key:
        return Rejection("key-mismatch", f"key {key!r} is not the event's entity_id {decoded.record['entity_id']!r}")
    if event_types is not None:
        try:
            event_types.parse(decoded.record)
        except InvalidEventError as exc:
            return Rejection("invalid-event", str(exc))
    if foldable is not None and decoded.event_type not in foldable:
        return Rejection("unfoldable-event",
                         f"entity {entity_type!r} declares no operations for event type {decoded.event_type!r}")
    return decoded
