"""What the broker said about each published event."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple
from uuid import UUID


class DeliveryReport(NamedTuple):
    """An event the broker acknowledged (acks=all): where it is and when the broker logged it.

    A named tuple: one is built per event on the publishing hot path."""

    event_id: UUID
    topic: str
    partition: int
    offset: int
    recorded_at_ms: int


@dataclass(frozen=True)
class DeliveryFailure:
    """An event that was not delivered, and the client's reason."""

    event_id: UUID
    topic: str
    reason: str
    retriable: bool
