"""Typed events: frozen pydantic models that mirror the Avro schemas in ``schemas/avro``.

An event's fields are the Avro record's fields, one for one (tests/events/test_models_mirror_avro.py
proves they accept and reject the same records). Validation is strict, as Avro's is: a string is
never coerced into a number. The models are stricter than Avro only where Avro cannot say it:
non-empty identifiers, timezone-aware times, scores in [0, 1], no unknown fields.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID, uuid4

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

NonEmpty = Field(min_length=1)
Score = Field(ge=0.0, le=1.0)


class Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class Event(Record):
    """The envelope every event carries; subclasses fix the entity type, event type and payload."""

    event_id: UUID = Field(default_factory=uuid4, strict=False)
    entity_type: str
    entity_id: str = NonEmpty
    event_type: str
    event_time: AwareDatetime
    source: str = NonEmpty
    payload: Record

    @field_validator("event_time")
    @classmethod
    def _utc_milliseconds(cls, value: datetime) -> datetime:
        # Avro stores timestamp-millis: normalise now so an event equals itself after a round trip.
        value = value.astimezone(UTC)
        return value.replace(microsecond=value.microsecond // 1000 * 1000)

    def to_record(self) -> dict[str, Any]:
        """The Avro record of this event."""
        return self.model_dump()


# --- order -------------------------------------------------------------------------------------

Classification = Literal["FRAUD", "NOT_FRAUD"]
ReviewDecision = Literal["APPROVE", "REJECT"]


class Address(Record):
    line1: str = NonEmpty
    city: str = NonEmpty
    postal_code: str
    country: str = Field(pattern=r"^[A-Z]{2}$")


class OrderCreatedPayload(Record):
    customer_id: str = NonEmpty
    amount_cents: int = Field(ge=0)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    shipping_address: Address


class OrderUpdatedPayload(Record):
    shipping_address: Address | None = None
    amount_cents: int | None = Field(default=None, ge=0)


class OrderClassifiedPayload(Record):
    classification: Classification
    model_score: float = Score
    model_version: str = NonEmpty


class OrderTaggedPayload(Record):
    tag: str = NonEmpty
    team: str = NonEmpty


class OrderUntaggedPayload(Record):
    tag: str = NonEmpty
    team: str = NonEmpty


class ChargebackReceivedPayload(Record):
    amount_cents: int = Field(ge=0)
    reason_code: str = NonEmpty


class ManualReviewDecidedPayload(Record):
    decision: ReviewDecision
    reviewer: str = NonEmpty
    note: str | None = None


class OrderEvent(Event):
    entity_type: Literal["order"] = "order"


class OrderCreated(OrderEvent):
    event_type: Literal["OrderCreated"] = "OrderCreated"
    payload: OrderCreatedPayload


class OrderUpdated(OrderEvent):
    event_type: Literal["OrderUpdated"] = "OrderUpdated"
    payload: OrderUpdatedPayload


class OrderClassified(OrderEvent):
    event_type: Literal["OrderClassified"] = "OrderClassified"
    payload: OrderClassifiedPayload


class OrderTagged(OrderEvent):
    event_type: Literal["OrderTagged"] = "OrderTagged"
    payload: OrderTaggedPayload


class OrderUntagged(OrderEvent):
    event_type: Literal["OrderUntagged"] = "OrderUntagged"
    payload: OrderUntaggedPayload


class ChargebackReceived(OrderEvent):
    event_type: Literal["ChargebackReceived"] = "ChargebackReceived"
    payload: ChargebackReceivedPayload


class ManualReviewDecided(OrderEvent):
    event_type: Literal["ManualReviewDecided"] = "ManualReviewDecided"
    payload: ManualReviewDecidedPayload


# --- content -----------------------------------------------------------------------------------

ContentKind = Literal["ARTICLE", "POST"]
ReportReason = Literal["MISINFORMATION", "SPAM", "ABUSE", "OTHER"]
Verdict = Literal["MISINFORMATION", "OK"]


class ContentPublishedPayload(Record):
    author_id: str = NonEmpty
    kind: ContentKind
    title: str
    language: str = NonEmpty


class ContentClassifiedPayload(Record):
    category: str = NonEmpty
    model_score: float = Score
    model_version: str = NonEmpty


class UserReportedPayload(Record):
    reporter_id: str = NonEmpty
    reason: ReportReason


class ReviewerVerdictPayload(Record):
    verdict: Verdict
    reviewer: str = NonEmpty


class ContentEvent(Event):
    entity_type: Literal["content"] = "content"


class ContentPublished(ContentEvent):
    event_type: Literal["ContentPublished"] = "ContentPublished"
    payload: ContentPublishedPayload


class ContentClassified(ContentEvent):
    event_type: Literal["ContentClassified"] = "ContentClassified"
    payload: ContentClassifiedPayload


class UserReported(ContentEvent):
    event_type: Literal["UserReported"] = "UserReported"
    payload: UserReportedPayload


class ReviewerVerdict(ContentEvent):
    event_type: Literal["ReviewerVerdict"] = "ReviewerVerdict"
    payload: ReviewerVerdictPayload


EVENT_MODELS: dict[str, type[Event]] = {
    model.model_fields["event_type"].default: model
    for model in (
        OrderCreated,
        OrderUpdated,
        OrderClassified,
        OrderTagged,
        OrderUntagged,
        ChargebackReceived,
        ManualReviewDecided,
        ContentPublished,
        ContentClassified,
        UserReported,
        ReviewerVerdict,
    )
}
