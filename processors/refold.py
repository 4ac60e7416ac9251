"""The reference for fault tests: what an uninterrupted processor emits for a log as it is now.

It runs the processor's own logic (``EntityProcessor``) over every event topic, partition by
partition from offset 0, with one in-memory store and no faults: the very same records, offsets and
broker timestamps that the workers saw. A run with faults must emit the same versions (by
``version_id``, field for field); duplicates are allowed under at-least-once.
"""

from __future__ import annotations

from collections import defaultdict
from uuid import UUID

from labelstore.events.reader import read_raw
from labelstore.labels import LabelVersion
from labelstore.settings import Settings
from labelstore.processors.core import EntityProcessor, RawMessage

BATCH = 1_000


def uninterrupted_versions(settings: Settings) -> dict[UUID, LabelVersion]:
    """Every label version of the current log, by ``version_id``, under the repository's first rules."""
    repository = settings.repository
    rules = repository.initial_rules()
    versions: dict[UUID, LabelVersion] = {}
    for entity_type, declaration in repository.declarations.items():
        processor = EntityProcessor(declaration, [r for r in rules if r.entity_type == entity_type])
        topic = settings.topics.events_topic(entity_type)
        by_partition = defaultdict(list)
        for key, value, partition, offset, timestamp, headers in read_raw(settings, topic):
            by_partition[partition].append(RawMessage(topic, partition, offset, timestamp, key, value, tuple(headers)))
        store: dict = {}
        for messages in by_partition.values():
            for start in range(0, len(messages), BATCH):
                result = processor.process(messages[start:start + BATCH], store.get)
                store.update(result.records)
                versions.update((v.version_id, v) for v in result.versions)
    return versions
