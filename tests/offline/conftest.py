"""A processor worker and a warehouse on the session broker, shared by the offline tests of a module."""

from __future__ import annotations

import time

from confluent_kafka import Consumer, KafkaException, TopicPartition

from labelstore.events.admin import end_offsets
from labelstore.settings import Settings, WarehouseSettings
from labelstore.warehouse import Warehouse
from labelstore.materializers.materializer import Materializer


def processed_everything(settings: Settings) -> bool:
    """The worker's group has committed the end of every event partition (so its outputs are out)."""
    topics = [settings.topics.events_topic(e) for e in settings.repository.entity_types]
    try:
        ends = end_offsets(settings, {t: list(range(settings.kafka.partitions)) for t in topics})
    except KafkaException:  # e.g. NOT_LEADER_FOR_PARTITION while a new topic's metadata settles
        return False
    # Consumer.committed, not AdminClient.list_consumer_group_offsets: the latter crashed
    # librdkafka (SIGSEGV in rd_kafka_cgrp_op) while the group coordinator was loading.
    consumer = Consumer({"bootstrap.servers": settings.kafka.bootstrap_servers,
                         "group.id": settings.topics.prefix + settings.processor.app_id, "enable.auto.commit": False})
    try:
        committed = consumer.committed([TopicPartition(t, p) for t in topics for p in ends[t]], timeout=30)
    except KafkaException:  # the group coordinator is still loading on a fresh broker
        return False
    finally:
        consumer.close()
    return all(tp.offset >= ends[tp.topic][tp.partition] or ends[tp.topic][tp.partition] == 0 for tp in committed)


def materialize(settings: Settings, path, *, timeout: float = 120) -> Warehouse:
    """Wait for the worker to process every published event, then archive everything."""
    deadline = time.monotonic() + timeout
    while not processed_everything(settings):
        assert time.monotonic() < deadline, "the worker did not process every event in time"
        time.sleep(0.5)
    settings = settings.model_copy(update={"warehouse": WarehouseSettings(path=path)})
    Materializer(settings).run(until_caught_up=True)
    return Warehouse(path)
