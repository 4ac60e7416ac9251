"""Errors of the event layer."""

from __future__ import annotations

from typing import TYPE_CHECKING

from labelstore.errors import LabelstoreError

if TYPE_CHECKING:
    from labelstore.events.delivery import DeliveryFailure, DeliveryReport


class InvalidEventError(LabelstoreError, ValueError):
    """An event does not match its model; the message lists each wrong field by its path."""


class PublishError(LabelstoreError):
    """One or more events were not delivered to Kafka.

    ``failures`` says which and why; ``delivered`` holds the reports of the batch's events that
    the broker did acknowledge, so a caller can retry exactly the rest.
    """

    def __init__(
        self,
        message: str,
        failures: list[DeliveryFailure] | None = None,
        delivered: list[DeliveryReport] | None = None,
    ) -> None:
        super().__init__(message)
        self.failures = failures or []
        self.delivered = delivered or []


class TopicMismatchError(LabelstoreError):
    """A topic exists with settings that labelstore cannot work with."""
