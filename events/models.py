"""The bases of every event model: a strict, frozen record, the envelope every event carries, and
Avro's scalar types as pydantic types.

The library holds no event types of its own: ``labelstore.events.typed`` builds one model per event
type from a repository's Avro schemas, subclassing ``Event`` with that type's payload. Validation is
strict, as Avro's is: a string is never coerced into a number.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any
from uuid import UUID, uuid4

from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field


def utc_milliseconds(value: datetime) -> datetime:
    """``value`` in UTC, cut to milliseconds: Avro's timestamp-millis keeps no more.

    Normalising when the model validates makes an event equal itself after a round trip."""
    value = value.astimezone(UTC)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def _iso_date(value: Any) -> Any:
    return date.fromisoformat(value) if isinstance(value, str) else value


# Avro's int and long are 32 and 64 bits: the encoder refuses anything wider, so the models do too.
Int = Annotated[int, Field(ge=-(2**31), le=2**31 - 1)]
Long = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]
# A decoded record carries a UUID, a service's JSON a string.
Uuid = Annotated[UUID, Field(strict=False)]
# fastavro writes a date given as an ISO string, and a service's JSON carries dates that way.
Date = Annotated[date, BeforeValidator(_iso_date)]
TimestampMillis = Annotated[AwareDatetime, AfterValidator(utc_milliseconds)]
TimestampMicros = Annotated[AwareDatetime, AfterValidator(_utc)]


class Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class Event(Record):
    """The envelope every event carries; generated subclasses fix the entity type, event type and payload."""

    event_id: Uuid = Field(default_factory=uuid4)
    entity_type: str
    entity_id: str = Field(min_length=1)
    event_type: str
    event_time: TimestampMillis
    source: str = Field(min_length=1)
    payload: Record

    def to_record(self) -> dict[str, Any]:
        """The Avro record of this event."""
        return self.model_dump()
