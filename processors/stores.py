"""A RocksDB store that finds a key's partition from the key, not from the "current event".

Faust's RocksDB store keeps one database per partition and picks it from the event being
processed. The processor writes and reads state for a whole micro-batch after the stream handed
the batch over, when that event is one of the batch's (or none, which fails an assertion), so
other entities' state would go to, or be looked for in, the wrong database. The entity-state
table's partition is a function of the key (``EntityStateTable.partition_for_key``, the same one
its changelog uses), so this store asks the table.
"""

from __future__ import annotations

from faust.stores.rocksdb import Store as RocksDBStore


class KeyPartitionedRocksDBStore(RocksDBStore):
    def _partition(self, key: bytes) -> int:
        return self.table.partition_for_key(key)

    def _set(self, key: bytes, value: bytes | None) -> None:
        partition = self._partition(key)
        self._key_index[key] = partition
        self._db_for_partition(partition).put(key, value)

    def _get(self, key: bytes) -> bytes | None:
        return self._db_for_partition(self._partition(key)).get(key)

    def _contains(self, key: bytes) -> bool:
        return self._get(key) is not None
