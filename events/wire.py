"""Events to bytes and back: pydantic models on one side, the Avro codec on the other."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from labelstore.events.exceptions import InvalidEventError
from labelstore.events.models import EVENT_MODELS, Event
from labelstore.schemas.codec import AvroCodec


def parse_event(data: Mapping[str, Any] | Event) -> Event:
    """Validate a mapping (e.g. a decoded record or a service's JSON) as the event its type names."""
    if isinstance(data, Event):
        return data
    event_type = data.get("event_type")
    model = EVENT_MODELS.get(event_type) if isinstance(event_type, str) else None
    if model is None:
        known = ", ".join(sorted(EVENT_MODELS))
        raise InvalidEventError(f"event_type: {event_type!r} is not an event type; known: {known}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidEventError(describe_validation_error(event_type, exc)) from exc


def describe_validation_error(event_type: str, exc: ValidationError) -> str:
    """One line per wrong field: ``OrderClassified.payload.model_score: <what is wrong> (got 1.5)``."""
    lines = []
    for error in exc.errors(include_url=False):
        path = ".".join(str(part) for part in (event_type, *error["loc"]))
        got = "" if error["type"] == "missing" else f" (got {error['input']!r})"
        lines.append(f"{path}: {error['msg']}{got}")
    return f"invalid {event_type} event:\n  " + "\n  ".join(lines)


class EventSerializer:
    """Encodes events with the current schemas and decodes bytes of any known writer schema."""

    def __init__(self, codec: AvroCodec | None = None) -> None:
        self.codec = codec or AvroCodec()

    def encode(self, event: Event) -> bytes:
        return self.codec.encode(event.event_type, event.to_record())

    def decode(self, data: bytes) -> Event:
        decoded = self.codec.decode(data)
        return parse_event(decoded.record)
