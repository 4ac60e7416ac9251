"""The entity-state table: a Faust table whose changelog partition is computed from the key.

Faust's table writes the changelog to the partition of the "current event"; in a micro-batch that
is the batch's last event, so other entities' changes would land in the wrong partition. Its
``use_partitioner`` option asks the producer instead, which fails while the producer has no
metadata for the just-created changelog topic. The changelog is co-partitioned with the event
topic, so the partition is the key's murmur2 choice (the Java client's, aiokafka's, labelstore's
publisher's) over the table's partition count, and needs no metadata at all.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.types import StoreT
from yarl import URL
from aiokafka.partitioner import murmur2


class EntityStateTable(faust.Table):
    def partition_for_key(self, key: Any) -> int:
        return (murmur2(key) & 0x7FFFFFFF) % self.partitions

    def _new_store_by_url(self, url: str | URL) -> StoreT:
        if URL(str(url)).scheme != "rocksdb":
            return super()._new_store_by_url(url)
        from labelstore.processors.stores import KeyPartitionedRocksDBStore

        return KeyPartitionedRocksDBStore(url, self.app, self, table_name=self.name, key_type=self.key_type,
                                          key_serializer=self.key_serializer, value_type=self.value_type,
                                          value_serializer=self.value_serializer, loop=self.loop, options=self.options)
