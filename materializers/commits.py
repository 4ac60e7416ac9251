"""Atomic, resumable commits of the archive: one Iceberg snapshot per table.

A commit appends each table's rows together with the next Kafka offset of every partition of the
topics archived into that table (the snapshot's summary). pyiceberg writes the data files, then
swaps the table's metadata pointer in the catalog: that swap is the commit point, so readers see
all of a commit's rows in a table or none. A crash before it leaves data files no snapshot names,
invisible to readers; ``recover`` deletes them. The tables commit one after the other, and each
resumes from its own snapshot's offsets: a crash between them archives nothing twice.

A commit without rows (the archive only got more complete) still makes a snapshot, for its
offsets and its complete-through time; the snapshot without rows it follows is then expired,
so an idle materializer keeps one such snapshot, not one every few seconds.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping

import pyarrow as pa

from labelstore import iceberg
from labelstore.warehouse import DATASETS, LAYOUTS, Commit, Warehouse

log = logging.getLogger("labelstore.materializer")


class CommitLog:
    def __init__(self, warehouse: Warehouse, topics: Mapping[str, Collection[str]]) -> None:
        """``topics``: the topics archived into each table."""
        self.warehouse = warehouse
        self.topics = topics
        last = warehouse.last_commit()
        self.sequence = last.sequence if last else 0
        self._staged: dict[str, list[pa.Table]] = {dataset: [] for dataset in DATASETS}
        self._tables = {}

    def recover(self) -> None:
        """Create the tables if they are missing; delete data files a crash left unnamed."""
        for dataset in DATASETS:
            table = self._tables[dataset] = self.warehouse.table(dataset, create=True)
            named = set(iceberg.data_files(table))
            # Append-only tables: the current snapshot names every file any snapshot named.
            for path in (self.warehouse.dataset_dir(dataset) / "data").glob("**/*.parquet"):
                if path not in named:
                    log.info("deleting %s: written by a commit that did not complete", path)
                    path.unlink()

    def stage(self, dataset: str, partition: Mapping[str, str], table: pa.Table,
              covers: Mapping[str, Mapping[int, tuple[int, int]]]) -> None:
        """Rows of the next commit, of one partition of a table (``covers``: the offsets they come from)."""
        layout = LAYOUTS[dataset]
        column = pa.array([partition[layout.partition_column]] * table.num_rows, pa.string())
        if layout.partition_column not in table.column_names:
            table = table.append_column(layout.partition_column, column)
        self._staged[dataset].append(layout.to_iceberg(table))

    def commit(self, offsets: Mapping[str, Mapping[int, int]], complete_through_ms: int | None = None) -> Commit:
        self.sequence += 1
        snapshots = {}
        for dataset in DATASETS:
            snapshots[dataset] = self._commit_table(dataset, offsets, complete_through_ms)
        return Commit(self.sequence, {t: dict(ps) for t, ps in offsets.items()}, complete_through_ms, snapshots)

    def _commit_table(self, dataset: str, offsets: Mapping[str, Mapping[int, int]],
                      complete_through_ms: int | None) -> int:
        table = self._tables[dataset]
        staged, self._staged[dataset] = self._staged[dataset], []
        rows = pa.concat_tables(staged) if staged else LAYOUTS[dataset].to_iceberg(
            LAYOUTS[dataset].arrow_schema.empty_table())
        own = {topic: dict(partitions) for topic, partitions in offsets.items() if topic in self.topics[dataset]}
        previous = table.current_snapshot()
        table.append(rows, snapshot_properties=iceberg.commit_properties(own, self.sequence, complete_through_ms))
        if previous is not None and iceberg.SnapshotFacts.of(previous).added_records == 0 and \
                previous.snapshot_id not in {ref.snapshot_id for ref in table.metadata.refs.values()}:
            table.maintenance.expire_snapshots().by_id(previous.snapshot_id).commit()
        return table.current_snapshot().snapshot_id
