"""Which records of an entity topic are events: one decision for the processor and the archive.

The processor sends a rejected record to the dead-letter topic; the materializer leaves it out of
the events archive. Both use ``admit``, so the offline re-fold sees exactly the events the
processor folded.
"""

from __future__ import annotations

from dataclasses import dataclass

from labelstore.events.exceptions import InvalidEventError
from labelstore.events.wire import parse_event
from labelstore.schemas.codec import AvroCodec, DecodedEvent
from labelstore.schemas.exceptions import DecodeError


@dataclass(frozen=True)
class Rejection:
    error_type: str
    reason: str


def admit(entity_type: str, key: bytes | None, value: bytes | None, codec: AvroCodec, *,
          validate_payloads: bool = True, foldable: frozenset[str] | None = None) -> DecodedEvent | Rejection:
    """The decoded event, or why the record on ``entity_type``'s topic is not one."""
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
    if validate_payloads:
        try:
            parse_event(decoded.record)
        except InvalidEventError as exc:
            return Rejection("invalid-event", str(exc))
    if foldable is not None and decoded.event_type not in foldable:
        return Rejection("unfoldable-event",
                         f"entity {entity_type!r} declares no operations for event type {decoded.event_type!r}")
    return decoded
