"""Where a micro-batch's outputs go: label versions, latest labels and dead letters, made durable
before the entity state is stored (see ``processors.core``); then the state, to the table and
its changelog.

Under at-least-once, a librdkafka producer of its own sends both: each record through Faust's
``Topic.send`` (an output, or a changelog record of a table write) cost ~0.15 ms of the worker's
single event loop, where ``produce`` costs a few microseconds and its I/O runs on librdkafka's
threads. ``flush`` then waits for every acknowledgement (acks=all) off the event loop. The
outputs are confirmed before the changelog records are produced: a state in the changelog then
always has its versions in Kafka. The changelog records are confirmed with the next batch's
outputs (or when the agent runs out of events), and only then are the batch's events
acknowledged: a batch waits for one round trip to the brokers, not two. Under exactly-once the
same outputs and changelog records go into transactions with the consumed offsets instead
(``processors.transactions``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from faust.types import TP

from labelstore.events.publisher import producer_config
from labelstore.settings import Settings
from labelstore.processors.core import BatchResult, encode_record
from labelstore.processors.dead_letters import dead_letter_headers

FLUSH_TIMEOUT_S = 30.0
# Faust topics of raw bytes: no Faust serialization on the hot path.
RAW = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}


class OutputError(KafkaException):
    """An output of the batch was not acknowledged; the batch's state must not be stored."""


def batch_outputs(result: BatchResult, settings: Settings) -> list[tuple[str, bytes | None, bytes | None, int, list]]:
    """(topic, key, value, partition, headers) of every output of a batch, in emission order.

    Every output goes to the partition of the event that caused it (the output topics have as many
    partitions as the event topics). The latest-label key is not the entity id, so hashing it would
    scatter an entity's outputs; under exactly-once this also puts an event's outputs in the
    transaction of its own partition.
    """
    topics = settings.topics
    outputs = []
    for version in result.versions:
        value, partition = version.to_json(), version.caused_by.partition
        outputs.append((topics.label_versions_topic, version.entity_id.encode(), value, partition, []))
        outputs.append((topics.label_latest_topic, version.latest_key, value, partition, []))
    for dead in result.dead_letters:
        outputs.append((topics.dead_letter_topic, dead.message.key, dead.message.value, dead.message.partition,
                        dead_letter_headers(dead)))
    return outputs


class DirectOutputs:
    """One agent's producer. ``await send_and_wait(result)`` returns once the batch's outputs, and
    every changelog record produced before them, are acknowledged by the brokers (``OutputError``
    if any is not). ``store_states`` writes the store and produces the changelog records without
    waiting: the next ``send_and_wait``, or ``settle``, confirms them. A batch's events may be
    acknowledged (their offsets committed) only once its changelog records are confirmed."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # Batching comes from the micro-batch; flush sends at once. Lingering only delays.
        self._producer = Producer(producer_config(settings, **{"linger.ms": 0, "batch.size": 1_048_576}))
        self._failures: list[KafkaError] = []
        self._unsettled = 0
        self._written: dict[tuple[str, int], int] = {}  # changelog (topic, partition) -> last offset confirmed
        self._stores: dict[str, Any] = {}  # changelog topic -> the table's store

    async def send_and_wait(self, result: BatchResult) -> None:
        for topic, key, value, partition, headers in batch_outputs(result, self.settings):
            if not self._produce_now(topic, key, value, partition, headers, self._delivered):
                await self._produce(topic, key, value, partition, headers, self._delivered)
        await self.settle()

    async def store_states(self, table: Any, result: BatchResult) -> None:
        """The batch's entity records, to the table's store and (unconfirmed) to its changelog.

        A record goes to the changelog partition of its entity's events: the changelog is
        co-partitioned with the event topic, and that is the partition a worker restores when it
        is given those events."""
        topic = table.changelog_topic.get_topic_name()
        store = self._stores[topic] = table.data
        on_delivery = self._changelog_delivered
        for key, record in result.records.items():
            value = encode_record(record)
            if not self._produce_now(topic, key, value, result.partitions[key], None, on_delivery):
                await self._produce(topic, key, value, result.partitions[key], None, on_delivery)
            store[key] = value  # not table[key]: that would send the changelog record again, through Faust

    async def settle(self) -> None:
        """Wait until everything produced so far is acknowledged."""
        if not self._unsettled:
            return
        remaining = await asyncio.to_thread(self._producer.flush, FLUSH_TIMEOUT_S)
        if self._failures:
            raise OutputError(self._failures[0])
        if remaining:
            raise OutputError(KafkaError(KafkaError._TIMED_OUT, f"{remaining} outputs unacknowledged after "
                                                                  f"{FLUSH_TIMEOUT_S:.0f} s"))
        self._unsettled = 0
        written, self._written = self._written, {}
        for (topic, partition), offset in written.items():
            # What Faust's table does when its own changelog write is acknowledged: a persistent
            # store then knows how far the changelog is already in it.
            self._stores[topic].set_persisted_offset(TP(topic, partition), offset)

    def _produce_now(self, topic: str, key: bytes | None, value: bytes | None, partition: int,
                     headers: list | None, on_delivery: Any) -> bool:
        """Produce, unless the local queue is full (False). Not a coroutine: one runs per output."""
        try:
            self._producer.produce(topic, value, key, partition, on_delivery, headers=headers or None)
        except BufferError:
            return False
        self._unsettled += 1
        return True

    async def _produce(self, topic: str, key: bytes | None, value: bytes | None, partition: int,
                       headers: list | None, on_delivery: Any) -> None:
        while not self._produce_now(topic, key, value, partition, headers, on_delivery):
            # The local queue is full: let acknowledgements drain it.
            await asyncio.to_thread(self._producer.poll, 0.05)

    def _delivered(self, error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            self._failures.append(error)

    def _changelog_delivered(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            self._failures.append(error)
            return
        where = (message.topic(), message.partition())
        self._written[where] = max(self._written.get(where, -1), message.offset())
