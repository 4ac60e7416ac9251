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
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from datetime import datetime
from typing import TYPE_CHECKING, Any

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

        def settle(report: DeliveryReport | None, failure: DeliveryFailure | None) -> None:
            if failure is None:
                future.set_result(report)
            else:
                self._unobserved_failures.append(failure)
                future.set_exception(PublishError(_describe([failure]), [failure]))

        self._send(event, settle)
        return future

    def publish_many(self, events: Iterable[Event | Mapping[str, Any]], *, timeout: float | None = None) -> list[DeliveryReport]:
        """Send a batch and wait for the broker; raise ``PublishError`` if any event failed.

        The whole batch is validated before the first event is sent, so an invalid event
        leaves no partial batch behind.
        """
        batch = [self.event_types.parse(event) for event in events]
        reports: list[DeliveryReport | None] = [None] * len(batch)
        failures: list[DeliveryFailure] = []

        def collector(index: int) -> Callable[[DeliveryReport | None, DeliveryFailure | None], None]:
            def settle(report: DeliveryReport | None, failure: DeliveryFailure | None) -> None:
                if failure is None:
                    reports[index] = report
                else:
                    failures.append(failure)

            return settle

        for index, event in enumerate(batch):
            self._send(event, collector(index))
        self._wait(timeout)
        if failures:
            delivered = [report for report in reports if report is not None]
            raise PublishError(_describe(failures), failures, delivered)
        return reports  # type: ignore[return-value]  # every slot is set once failures is empty

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

    def _send(self, event: Event, settle: Callable[[DeliveryReport | None, DeliveryFailure | None], None]) -> None:
        topic = self._topics.events_topic(event.entity_type)
        value = self._serializer.encode(event)
        callback = _delivery_callback(event, topic, settle)
        while True:
            try:
                self._producer.produce(topic, value=value, key=event.entity_id.encode(), on_delivery=callback)
                break
            except BufferError:
                # The local queue is full: serve delivery reports to make room, then retry.
                self._producer.poll(0.05)
            except KafkaException as exc:
                error = exc.args[0]
                failure = DeliveryFailure(event.event_id, topic, error.str(), error.retriable())
                raise PublishError(_describe([failure]), [failure]) from exc

    def _wait(self, timeout: float | None) -> None:
        remaining = self._producer.flush(-1 if timeout is None else timeout)
        if remaining:
            raise PublishError(f"{remaining} events still undelivered after {timeout} s; nothing was dropped, call flush() again or raise the timeout")


def _delivery_callback(
    event: Event, topic: str, settle: Callable[[DeliveryReport | None, DeliveryFailure | None], None]
) -> DeliveryCallback:
    def on_delivery(error: KafkaError | None, message: Message) -> None:
        if error is None:
            _, timestamp = message.timestamp()
            settle(DeliveryReport(event.event_id, topic, message.partition(), message.offset(), timestamp), None)
        else:
            log.debug("event %s not delivered to %s: %s", event.event_id, topic, error.str())
            settle(None, DeliveryFailure(event.event_id, topic, error.str(), error.retriable()))

    return on_delivery


def _describe(failures: list[DeliveryFailure]) -> str:
    reasons = sorted({f.reason for f in failures})
    first = failures[0]
    return (
        f"{len(failures)} event(s) not delivered (first: {first.event_id} to {first.topic}); "
        f"reason(s): {'; '.join(reasons)}"
    )
