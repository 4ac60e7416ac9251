"""Events to bytes and back: typed events on one side, the Avro codec on the other."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from labelstore.events.models import Event
from labelstore.schemas.codec import AvroCodec

if TYPE_CHECKING:
    from labelstore.events.typed import EventTypes


def parse_event(data: Mapping[str, Any] | Event, event_types: EventTypes) -> Event:
    """Validate a mapping (e.g. a decoded record or a service's JSON) as the event its type names."""
    return event_types.parse(data)


def describe_validation_error(event_type: str, exc: ValidationError) -> str:
    """One line per wrong field: ``LoginFailed.payload.attempts: <what is wrong> (got -1)``."""
    lines = []
    for error in exc.errors(include_url=False):
        path = ".".join(str(part) for part in (event_type, *error["loc"]))
        got = "" if error["type"] == "missing" else f" (got {error['input']!r})"
        lines.append(f"{path}: {error['msg']}{got}")
    return f"invalid {event_type} event:\n  " + "\n  ".join(lines)


class EventSerializer:
    """Encodes events with the current schemas and decodes bytes of any known writer schema."""

    def __init__(self, codec: AvroCodec, event_types: EventTypes) -> None:
        self.codec = codec
        self.event_types = event_types

    def encode(self, event: Event) -> bytes:
        return self.codec.encode_object(event.event_type, event)

    def decode(self, data: bytes) -> Event:
        return self.event_types.parse(self.codec.decode(data).record)
