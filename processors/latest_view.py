"""Follow the compacted ``labels.latest`` topic into an in-memory view: the latest label of every
entity, for services that want labels without calling the workers' endpoint.

The view is idempotent: a record applies only if its causing event is not older than the one the
view holds for that entity and label (an entity's events share one partition, so offsets order
them). A duplicate written by a replay carries the same ``version_id`` and the same cause, and
changes nothing.

    view = LatestLabelsView(Settings())
    view.catch_up()                      # everything written so far
    view.get("order", "order-42", "fraud").value
    for version in view.follow():        # then each change as it arrives
        ...
"""

from __future__ import annotations

from collections.abc import Iterator

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from labelstore.events.reader import read_raw
from labelstore.connection import bootstrap_servers
from labelstore.labels import LabelVersion
from labelstore.settings import Settings


class LatestLabelsView:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topic = settings.topics.label_latest_topic
        self._labels: dict[tuple[str, str, str], LabelVersion] = {}
        self._positions: dict[int, int] = {}

    def get(self, entity_type: str, entity_id: str, label: str) -> LabelVersion | None:
        return self._labels.get((entity_type, entity_id, label))

    def __len__(self) -> int:
        return len(self._labels)

    def apply(self, version: LabelVersion) -> bool:
        """Take a version into the view; False if it is a duplicate or older than what is held."""
        key = (version.entity_type, version.entity_id, version.label)
        held = self._labels.get(key)
        if held is not None and (held.version_id == version.version_id or held.caused_by.offset > version.caused_by.offset):
            return False
        self._labels[key] = version
        return True

    def catch_up(self) -> int:
        """Read the topic up to its current end; returns how many records changed the view."""
        changed = 0
        for _, value, partition, offset, *_ in read_raw(self.settings, self.topic):
            self._positions[partition] = offset + 1
            changed += value is not None and self.apply(LabelVersion.from_json(value))
        return changed

    def follow(self, poll_timeout: float = 1.0) -> Iterator[LabelVersion]:
        """Yield every version that changes the view, from where ``catch_up`` stopped, forever."""
        consumer = Consumer({"bootstrap.servers": bootstrap_servers(self.settings), "group.id": "labelstore-view",
                             "enable.auto.commit": False})
        partitions = consumer.list_topics(self.topic, timeout=30).topics[self.topic].partitions
        consumer.assign([TopicPartition(self.topic, p, self._positions.get(p, OFFSET_BEGINNING)) for p in partitions])
        try:
            while True:
                message = consumer.poll(poll_timeout)
                if message is None or message.value() is None:
                    continue
                if message.error():
                    raise KafkaException(message.error())
                self._positions[message.partition()] = message.offset() + 1
                version = LabelVersion.from_json(message.value())
                if self.apply(version):
                    yield version
        finally:
            consumer.close()
