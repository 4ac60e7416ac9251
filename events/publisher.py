"""The publishing SDK: typed events into Kafka, keyed by entity, and never lost without a word.

Events are typed by the label repository's schemas: ``publish("LoginFailed", entity_id=...,
event_time=..., payload={...})`` works for every event type of the repository, and so does an
event built with the repository's generated models (``repository.event_types``, or the classes
``labelstore codegen`` writes). Every event is validated before anything is sent, keyed by ``entity_id`` (so one entity's events
stay in one partition, in order) and produced by an idempotent producer with ``acks=all`` and the
murmur2 partitioner that the Java client, aiokafka and Faust use, so every topic keyed by entity is
co-partitioned with the processor's. The broker's answer reaches the caller: ``publish`` returns a
future; ``publish_many`` returns reports or raises; ``flush``/``close`` raise for any failure that
nobody looked at.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any, overload
from uuid import UUID

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from labelstore.events.delivery import DeliveryFailure, DeliveryReport
from labelstore.events.exceptions import PublishError
from labelstore.events.models import Event
from labelstore.events.wire import EventSerializer
from labelstore.connection import bootstrap_servers
from labelstore.settings import Settings

if TYPE_CHECKING:
    from labelstore.repository import Repository

log = logging.getLogger(__name__)

DeliveryCallback = Callable[[KafkaError | None, Message], None]


def producer_config(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """librdkafka settings shared by every labelstore producer."""
    return {
        "bootstrap.servers": bootstrap_servers(settings),
        "enable.idempotence": True,
        "acks": "all",
        # librdkafka's default is CRC32; murmur2 keeps keys in the partitions Faust/Java expect.
        "partitioner": "murmur2_random",
        "linger.ms": settings.kafka.linger_ms,
        "delivery.timeout.ms": settings.kafka.delivery_timeout_ms,
        "compression.type": "lz4",
        **overrides,
    }


class Publisher:
    """Publishes events; use as a context manager so pending events are flushed on exit."""

    def __init__(
        self,
        settings: Settings,
        *,
        repository: Repository | None = None,
        source: str = "sdk",
        serializer: EventSerializer | None = None,
        producer_overrides: Mapping[str, Any] | None = None,
    ) -> None:
        repository = repository or settings.repository
        self._topics = settings.topics
        self.source = source  # of events published by type name without one
        self.event_types = repository.event_types
        self._serializer = serializer or EventSerializer(repository.codec, self.event_types)
        self._producer = Producer(producer_config(settings, **dict(producer_overrides or {})))
        self._topic_cache: dict[str, str] = {}
        self._unobserved_failures: list[DeliveryFailure] = []
        # Delivery reports arrive only when the client is polled: a background poller lets a
        # caller wait on a future without flushing.
        self._closed = threading.Event()
        self._poller = threading.Thread(target=self._poll_until_closed, name="labelstore-publisher-poll", daemon=True)
        self._poller.start()

    def publish(self, event: Event | Mapping[str, Any] | str, *, entity_id: str | None = None,
                event_time: datetime | None = None, payload: Mapping[str, Any] | None = None,
                source: str | None = None, event_id: Any = None) -> Future[DeliveryReport]:
        """Send one event; the future resolves when the broker acknowledged it, or fails.

        ``event`` is an event, a mapping of its fields, or an event type name with the fields as
        keywords: ``publish("LoginFailed", entity_id="acct-1", event_time=now, payload={...})``."""
        if isinstance(event, str):
            event = self._create(event, entity_id=entity_id, event_time=event_time, payload=payload,
                                 source=source, event_id=event_id)
        else:
            event = self.event_types.parse(event)
        future: Future[DeliveryReport] = Future()
        topic = self._topic_of(event.entity_type)
        # partial, not a closure: one is made per event.
        self._produce(topic, event.entity_id.encode(), self._serializer.encode(event),
                      partial(self._settle, future, event.event_id, topic), event.event_id)
        return future

    def publish_many(self, events: Iterable[Event | Mapping[str, Any]], *,
                     timeout: float | None = None) -> DeliveryReports:
        """Send a batch and wait for the broker; raise ``PublishError`` if any event failed.

        The whole batch is validated before the first event is sent, so an invalid event
        leaves no partial batch behind. The reports are in the order of ``events``.
        """
        batch = [self.event_types.parse(event) for event in events]
        delivered: list[tuple[KafkaError | None, Message] | None] = [None] * len(batch)
        encode, topic_of, produce = self._serializer.encode, self._topic_of, self._produce
        for index, event in enumerate(batch):
            # Reports arrive on whichever thread polls (this one in flush, the poller): each
            # goes to its event's slot. A partial, not a closure: one is made per event.
            produce(topic_of(event.entity_type), event.entity_id.encode(), encode(event),
                    partial(_deliver, delivered, index), event.event_id)
        self._wait(timeout)
        reports = DeliveryReports(batch, delivered)
        failures = reports.failures()
        if failures:
            raise PublishError(_describe(failures), failures, [r for r in reports if r is not None])
        return reports

    def flush(self, timeout: float | None = None) -> None:
        """Wait for every pending event; raise for every `publish` that failed since the last flush."""
        self._wait(timeout)
        failures, self._unobserved_failures = self._unobserved_failures, []
        if failures:
            raise PublishError(_describe(failures), failures)

    def close(self, timeout: float | None = None) -> None:
        try:
            self.flush(timeout)
        finally:
            self._closed.set()
            self._poller.join()

    def _create(self, event_type: str, **fields: Any) -> Event:
        given = {name: value for name, value in fields.items() if value is not None}
        return self.event_types.parse({"event_type": event_type, "source": self.source, **given})

    def _poll_until_closed(self) -> None:
        while not self._closed.is_set():
            self._producer.poll(0.05)

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _settle(self, future: Future[DeliveryReport], event_id: UUID, topic: str, error: KafkaError | None,
                message: Message) -> None:
        if error is None:
            report = DeliveryReport(event_id, topic, message.partition(), message.offset(), message.timestamp()[1])
            future.set_result(report)
            return
        failure = DeliveryFailure(event_id, topic, error.str(), error.retriable())
        log.debug("event %s not delivered to %s: %s", event_id, topic, failure.reason)
        # Looked up when the report comes, not when the event was sent: a flush may have taken the
        # list since (another thread publishing meanwhile); this failure is then the next flush's.
        self._unobserved_failures.append(failure)
        future.set_exception(PublishError(_describe([failure]), [failure]))

    def _topic_of(self, entity_type: str) -> str:
        topic = self._topic_cache.get(entity_type)
        if topic is None:
            topic = self._topic_cache[entity_type] = self._topics.events_topic(entity_type)
        return topic

    def _produce(self, topic: str, key: bytes, value: bytes, on_delivery: DeliveryCallback, event_id: UUID) -> None:
        while True:
            try:
                self._producer.produce(topic, value, key, on_delivery=on_delivery)
                return
            except BufferError:
                # The local queue is full: serve delivery reports to make room, then retry.
                self._producer.poll(0.05)
            except KafkaException as exc:
                error = exc.args[0]
                failure = DeliveryFailure(event_id, topic, error.str(), error.retriable())
                raise PublishError(_describe([failure]), [failure]) from exc

    def _wait(self, timeout: float | None) -> None:
        remaining = self._producer.flush(-1 if timeout is None else timeout)
        if remaining:
            raise PublishError(f"{remaining} events still undelivered after {timeout} s; nothing was dropped, call flush() again or raise the timeout")


def _deliver(delivered: list, index: int, error: KafkaError | None, message: Message) -> None:
    delivered[index] = (error, message)


class DeliveryReports(Sequence[DeliveryReport]):
    """The reports of a ``publish_many`` batch, in the batch's order, each made when first read:
    one report object per event cost as much as producing it, and most callers only check that
    nothing failed."""

    def __init__(self, batch: Sequence[Event], delivered: Sequence[tuple[KafkaError | None, Message]]) -> None:
        self._batch = batch
        self._delivered = delivered

    def __len__(self) -> int:
        return len(self._batch)

    @overload
    def __getitem__(self, index: int) -> DeliveryReport: ...

    @overload
    def __getitem__(self, index: slice) -> list[DeliveryReport]: ...

    def __getitem__(self, index: int | slice) -> DeliveryReport | list[DeliveryReport]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        error, message = self._delivered[index]
        if error is not None:
            return None  # type: ignore[return-value]  # only in a PublishError's reports: failures()
        return DeliveryReport(self._batch[index].event_id, message.topic(), message.partition(), message.offset(),
                              message.timestamp()[1])

    def failures(self) -> list[DeliveryFailure]:
        return [DeliveryFailure(self._batch[index].event_id, message.topic(), error.str(), error.retriable())
                for index, (error, message) in enumerate(self._delivered) if error is not None]


def _describe(failures: list[DeliveryFailure]) -> str:
    reasons = sorted({f.reason for f in failures})
    first = failures[0]
    return (
        f"{len(failures)} event(s) not delivered (first: {first.event_id} to {first.topic}); "
        f"reason(s): {'; '.join(reasons)}"
    )
