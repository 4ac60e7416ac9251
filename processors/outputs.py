"""Where a micro-batch's outputs go: label versions, latest labels and dead letters, made durable
before the entity state is stored (see ``processors.core``).

Under at-least-once, a librdkafka producer of its own sends them: each output through Faust's
``Topic.send`` cost ~0.15 ms of the worker's single event loop (a batch of 300 label changes
spent ~100 ms there), where ``produce`` costs a few microseconds and its I/O runs on librdkafka's
threads. ``flush`` then waits for every acknowledgement (acks=all) off the event loop and sends
at once, without waiting for ``linger.ms``. Under exactly-once the outputs must join Faust's
transactions, so they go through Faust's topics as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import faust
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from events.publisher import producer_config
from labelstore.settings import Settings
from processors.core import BatchResult
from processors.dead_letters import dead_letter_headers

FLUSH_TIMEOUT_S = 30.0


class OutputError(KafkaException):
    """An output of the batch was not acknowledged; the batch's state must not be stored."""


def batch_outputs(result: BatchResult, settings: Settings) -> list[tuple[str, bytes | None, bytes | None, int, list]]:
    """(topic, key, value, partition, headers) of every output of a batch, in emission order.

    Every output goes to the partition of the event that caused it (the output topics have as many
    partitions as the event topics). The latest-label key is not the entity id, so hashing it would
    scatter an entity's outputs; under exactly-once, Faust picks the transaction by output
    partition, so this also keeps an event's outputs in its own partition's transaction.
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
    """One agent's output producer: ``await send_and_wait(result)`` returns once every output of
    the batch is acknowledged by the brokers, and raises ``OutputError`` if any is not."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # linger only batches what arrives between flushes; flush itself sends at once.
        self._producer = Producer(producer_config(settings, **{"linger.ms": 5, "batch.size": 1_048_576}))

    async def send_and_wait(self, result: BatchResult) -> None:
        outputs = batch_outputs(result, self.settings)
        if not outputs:
            return
        failures: list[KafkaError] = []

        def delivered(error: KafkaError | None, _message: Message) -> None:
            if error is not None:
                failures.append(error)

        produce = self._producer.produce
        for topic, key, value, partition, headers in outputs:
            while True:
                try:
                    produce(topic, key=key, value=value, partition=partition, headers=headers or None,
                            on_delivery=delivered)
                    break
                except BufferError:  # the local queue is full: let acknowledgements drain it
                    await asyncio.to_thread(self._producer.poll, 0.05)
        remaining = await asyncio.to_thread(self._producer.flush, FLUSH_TIMEOUT_S)
        if failures:
            raise OutputError(failures[0])
        if remaining:
            raise OutputError(KafkaError(KafkaError._TIMED_OUT, f"{remaining} outputs unacknowledged after "
                                                                  f"{FLUSH_TIMEOUT_S:.0f} s"))

    def close(self) -> None:
        self._producer.flush(FLUSH_TIMEOUT_S)


class FaustOutputs:
    """The outputs through Faust's topics (and so through its transactions under exactly-once)."""

    def __init__(self, app: faust.App, settings: Settings) -> None:
        raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
        self._topics: Mapping[str, Any] = {
            name: app.topic(name, **raw) for name in (settings.topics.label_versions_topic,
                                                      settings.topics.label_latest_topic,
                                                      settings.topics.dead_letter_topic)}
        self.settings = settings

    async def send_and_wait(self, result: BatchResult) -> None:
        pending = [await self._topics[topic].send(key=key, value=value, partition=partition, headers=headers or None)
                   for topic, key, value, partition, headers in batch_outputs(result, self.settings)]
        if pending:
            await asyncio.gather(*pending)

    def close(self) -> None:
        pass
