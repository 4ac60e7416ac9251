"""The entity-state table: a Faust table whose changelog partition is computed from the key.

Faust's table writes the changelog to the partition of the "current event"; in a micro-batch that
is the batch's last event, so other entities' changes would land in the wrong partition. Its
``use_partitioner`` option asks the producer instead, which fails while the producer has no
metadata for the just-created changelog topic. The changelog is co-partitioned with the event
topic, so the partition is the key's murmur2 choice (the Java client's, aiokafka's, labelstore's
publisher's) over the table's partition count, and needs no metadata at all.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import faust
import orjson
from faust.types import StoreT
from yarl import URL
from aiokafka.partitioner import murmur2


class EntityStateTable(faust.Table):
    def partition_for_key(self, key: Any) -> int:
        return (murmur2(key) & 0x7FFFFFFF) % self.partitions

    def apply_changelog_batch(self, batch: Iterable[Any]) -> None:
        """Recover an entity's state from its changelog records, keeping the one that folded the
        latest event (the ``offset`` every state record carries), not merely the last written.

        A worker that was paused past its session timeout (a zombie) finishes the batch it was in,
        and may write it, before it learns that its partitions moved: its states are older than
        those the new owner wrote meanwhile, yet land after them. Recovered as they lie, the next
        owner would fold later events onto states missing some (measured in the chaos run)."""
        newest: dict[Any, int] = {}
        kept = []
        for event in batch:
            key, value = event.key, event.value
            folded = _folded_offset(value)
            if folded is not None:
                known = newest.get(key)
                if known is None:
                    known = _folded_offset(self.data.get(key))
                if known is not None and folded < known:
                    continue  # an older state, written late
                newest[key] = folded
            kept.append(event)
        super().apply_changelog_batch(kept)

    def _new_store_by_url(self, url: str | URL) -> StoreT:
        if URL(str(url)).scheme != "rocksdb":
            return super()._new_store_by_url(url)
        from labelstore.processors.stores import KeyPartitionedRocksDBStore

        return KeyPartitionedRocksDBStore(url, self.app, self, table_name=self.name, key_type=self.key_type,
                                          key_serializer=self.key_serializer, value_type=self.value_type,
                                          value_serializer=self.value_serializer, loop=self.loop, options=self.options)


def _folded_offset(value: bytes | None) -> int | None:
    if not value:
        return None
    return orjson.loads(value).get("offset")
