"""The worker's output producer: a batch's outputs are acknowledged, or the batch fails."""

from __future__ import annotations

import asyncio

import pytest
from confluent_kafka import KafkaException

from labelstore.events.reader import read_raw
from labelstore.processors.core import BatchResult, DeadLetter, RawMessage
from labelstore.processors.dead_letters import ERROR_TYPE
from labelstore.processors.outputs import DirectOutputs, OutputError


def dead_letter(settings, partition: int) -> DeadLetter:
    message = RawMessage(settings.topics.events_topic("order"), partition, 7, 0, b"k", b"v", (("h", b"1"),))
    return DeadLetter(message, "test-error", "why")


def test_acknowledged_outputs_are_in_their_topics_with_headers(settings):
    outputs = DirectOutputs(settings)
    asyncio.run(outputs.send_and_wait(BatchResult(dead_letters=[dead_letter(settings, 3)])))
    # Acknowledged means readable right away, no waiting.
    [(key, value, partition, offset, _, headers)] = list(read_raw(settings, settings.topics.dead_letter_topic))
    assert (key, value, partition) == (b"k", b"v", 3)
    assert dict(headers)["h"] == b"1" and dict(headers)[ERROR_TYPE] == b"test-error"


def test_an_output_the_brokers_refuse_fails_the_batch(settings):
    outputs = DirectOutputs(settings)
    with pytest.raises(KafkaException) as refused:  # partition 99 of a 6-partition topic
        asyncio.run(outputs.send_and_wait(BatchResult(dead_letters=[dead_letter(settings, 99)])))
    assert isinstance(refused.value, OutputError) or "partition" in str(refused.value).lower(), refused.value
