"""Read a topic from its start to its current end: for tools, checks and tests, not for processing.

It assigns partitions directly (no consumer group, no commits), so reading never disturbs a
processor's group, and stops once every partition reached the end offset seen at the start.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from time import monotonic, sleep

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from labelstore.events.models import Event
from labelstore.events.wire import EventSerializer
from labelstore.connection import bootstrap_servers
from labelstore.errors import LabelstoreError
from labelstore.settings import Settings


@dataclass(frozen=True)
class StoredEvent:
    event: Event
    partition: int
    offset: int
    recorded_at_ms: int


# A new topic's partitions answer these until their leaders are ready (librdkafka does not flag
# NOT_LEADER_FOR_PARTITION as retriable for offset requests).
LEADERSHIP_SETTLING = {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
                       KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._TIMED_OUT}
RawRecord = tuple[bytes | None, bytes | None, int, int, int, list[tuple[str, bytes]]]


def read_raw(settings: Settings, topic: str, *, timeout: float = 60.0) -> Iterator[RawRecord]:
    """Yield (key, value, partition, offset, timestamp_ms, headers) of every record now in ``topic``."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap_servers(settings),
        "group.id": "labelstore-reader",  # required by the client; never joined or committed
        "enable.auto.commit": False,
        "enable.partition.eof": False,
    })
    try:
        ends = _end_offsets(consumer, topic, timeout)
        remaining = {p: end for p, end in ends.items() if end > 0}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in remaining])
        deadline = monotonic() + timeout
        while remaining:
            if monotonic() > deadline:
                raise LabelstoreError(f"reading {topic} timed out with partitions {sorted(remaining)} unfinished")
            messages = consumer.consume(10_000, timeout=0.5)
            if not messages:
                # Transaction markers and compaction leave gaps: the position, not the last
                # record's offset, tells when a partition is done.
                _drop_finished(consumer, topic, remaining)
            for message in messages:
                if message.error():
                    raise KafkaException(message.error())
                partition, offset = message.partition(), message.offset()
                if partition in remaining and offset < remaining[partition]:
                    yield (message.key(), message.value(), partition, offset, message.timestamp()[1],
                           message.headers() or [])
                    if offset + 1 >= remaining[partition]:
                        del remaining[partition]
    finally:
        consumer.close()


def read_events(settings: Settings, topic: str, *, serializer: EventSerializer | None = None, timeout: float = 60.0) -> Iterator[StoredEvent]:
    serializer = serializer or EventSerializer(settings.repository.codec, settings.repository.event_types)
    for _, value, partition, offset, timestamp, _ in read_raw(settings, topic, timeout=timeout):
        yield StoredEvent(serializer.decode(value), partition, offset, timestamp)


def count_records(settings: Settings, topic: str, *, timeout: float = 30.0) -> int:
    """Records now in ``topic`` (end minus start offsets; transaction markers count too)."""
    consumer = Consumer({"bootstrap.servers": bootstrap_servers(settings), "group.id": "labelstore-reader"})
    try:
        ends = _end_offsets(consumer, topic, timeout)
        starts = {p: _watermarks(consumer, topic, p, timeout)[0] for p in ends}
        return sum(ends[p] - starts[p] for p in ends)
    finally:
        consumer.close()


def _drop_finished(consumer: Consumer, topic: str, remaining: dict[int, int]) -> None:
    for position in consumer.position([TopicPartition(topic, p) for p in remaining]):
        if position.offset >= remaining[position.partition]:
            del remaining[position.partition]


def _end_offsets(consumer: Consumer, topic: str, timeout: float) -> dict[int, int]:
    metadata = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
    if metadata is None or metadata.error is not None:
        raise LabelstoreError(f"topic {topic} does not exist: create it with `labelstore topics create`")
    return {p: _watermarks(consumer, topic, p, timeout)[1] for p in metadata.partitions}


def _watermarks(consumer: Consumer, topic: str, partition: int, timeout: float) -> tuple[int, int]:
    # Right after a topic is created, its leaders may not serve offsets yet: retry what is retriable.
    deadline = monotonic() + timeout
    while True:
        try:
            return consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout)
        except KafkaException as exc:
            error = exc.args[0]
            if not (error.retriable() or error.code() in LEADERSHIP_SETTLING) or monotonic() > deadline:
                raise
            sleep(0.1)
