"""Rule activations as records on the rules topic, which every processor follows.

A record carries the whole rule version (processors need no catalog access) or ``rule: null`` to
switch a label off. It applies to every event whose log-append time is at or after the record's
own log-append time on the rules topic: a point in the log that every worker, and every replay,
agrees on.
"""

from __future__ import annotations

from uuid import UUID, uuid4

from pydantic import BaseModel, ConfigDict, Field

from labelstore.rules.model import LabelRule
from labelstore.settings import Settings


class ActivationRecord(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    activation_id: UUID = Field(default_factory=uuid4)
    label: str
    entity_type: str
    rule: LabelRule | None  # None: the label is switched off
    activated_by: str

    @property
    def key(self) -> bytes:
        return f"{self.label}/{self.activation_id}".encode()


def publish_activation(settings: Settings, record: ActivationRecord, *, timeout: float = 30.0) -> tuple[int, int, int]:
    """Append the record to the rules topic; returns (partition, offset, log-append time ms)."""
    from confluent_kafka import Producer

    from labelstore.events.publisher import producer_config
    from labelstore.errors import LabelstoreError

    producer = Producer(producer_config(settings))
    delivered: list = []
    producer.produce(settings.topics.rules_topic, key=record.key, value=record.model_dump_json().encode(),
                     on_delivery=lambda error, message: delivered.append((error, message)))
    producer.flush(timeout)
    if not delivered or delivered[0][0] is not None:
        reason = delivered[0][0] if delivered else "no acknowledgement in time"
        raise LabelstoreError(f"could not publish the activation to {settings.topics.rules_topic}: {reason}")
    message = delivered[0][1]
    return message.partition(), message.offset(), message.timestamp()[1]
