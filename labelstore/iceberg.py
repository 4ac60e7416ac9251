"""The warehouse's Apache Iceberg tables: the catalog, each table's schema and partitioning, commits
that carry the Kafka offsets they cover, and the data files a snapshot reads.

    <namespace>.events          every event, as archived; partitioned by entity_type, day(recorded_at)
    <namespace>.label_versions  every label version emitted; partitioned by label, day(recorded_at)

The catalog is pyiceberg's SQL catalog (SQLite beside the data by default, PostgreSQL by URL) or
a REST catalog (an ``http(s)://`` URL). A commit is one Iceberg snapshot per table; its summary
holds the next Kafka offset of every partition of the topics archived into that table, so a
restarted materializer resumes from the snapshot readers see, exactly once. Iceberg keeps
timestamps in microseconds; the archive's times are whole milliseconds all the same.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import pyarrow as pa
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import NoSuchTableError
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.transforms import DayTransform, IdentityTransform
from pyiceberg.types import BinaryType, IntegerType, LongType, NestedField, StringType, TimestamptzType

SUMMARY_OFFSETS = "labelstore.kafka-offsets"
SUMMARY_COMMIT = "labelstore.commit"
SUMMARY_COMPLETE_THROUGH = "labelstore.complete-through-ms"
ICEBERG_TIME = pa.timestamp("us", tz="UTC")
TABLE_PROPERTIES = {
    "write.parquet.compression-codec": "zstd",
    # Every commit writes a new metadata file: keep the last few, not one per commit forever.
    "write.metadata.delete-after-commit.enabled": "true",
    "write.metadata.previous-versions-max": "20",
}
_ICEBERG_TYPES = {pa.string(): StringType(), pa.int32(): IntegerType(), pa.int64(): LongType(),
                  pa.binary(): BinaryType(), pa.timestamp("ms", tz="UTC"): TimestamptzType()}


@dataclass(frozen=True)
class Layout:
    """One table: the archive's columns, then the column it is partitioned by besides the day."""

    columns: pa.Schema  # as the materializer makes rows (see labelstore.warehouse)
    partition_column: str  # entity_type or label, a column of the table

    @property
    def arrow_schema(self) -> pa.Schema:
        fields = list(self.columns)
        if self.partition_column not in self.columns.names:
            fields.append(pa.field(self.partition_column, pa.string()))
        return pa.schema(fields)

    def iceberg_schema(self) -> Schema:
        return Schema(*(NestedField(index, field.name, _ICEBERG_TYPES[field.type], required=False)
                        for index, field in enumerate(self.arrow_schema, start=1)))

    def partition_spec(self, schema: Schema) -> PartitionSpec:
        return PartitionSpec(
            PartitionField(schema.find_field(self.partition_column).field_id, 1000, IdentityTransform(),
                           self.partition_column),
            PartitionField(schema.find_field("recorded_at").field_id, 1001, DayTransform(), "date"))

    def to_iceberg(self, table: pa.Table) -> pa.Table:
        """Rows in the archive's types, as the Iceberg table takes them (times in microseconds)."""
        schema = pa.schema([field.with_type(ICEBERG_TIME) if pa.types.is_timestamp(field.type) else field
                            for field in self.arrow_schema])
        return table.select(schema.names).cast(schema)


def open_catalog(url: str, root: Path) -> Catalog:
    if url.startswith(("http://", "https://")):
        from pyiceberg.catalog.rest import RestCatalog

        return RestCatalog("labelstore", uri=url, warehouse=root.as_uri())
    from pyiceberg.catalog.sql import SqlCatalog

    return SqlCatalog("labelstore", uri=url, warehouse=root.as_uri())


def load_table(catalog: Catalog, identifier: str) -> Table | None:
    try:
        return catalog.load_table(identifier)
    except NoSuchTableError:
        return None


def create_table(catalog: Catalog, namespace: str, name: str, layout: Layout, location: Path) -> Table:
    catalog.create_namespace_if_not_exists(namespace)
    schema = layout.iceberg_schema()
    return catalog.create_table_if_not_exists(f"{namespace}.{name}", schema=schema, location=location.as_uri(),
                                              partition_spec=layout.partition_spec(schema),
                                              properties=TABLE_PROPERTIES)


def commit_properties(offsets: Mapping[str, Mapping[int, int]], commit: int,
                      complete_through_ms: int | None) -> dict[str, str]:
    properties = {SUMMARY_OFFSETS: json.dumps({t: {str(p): o for p, o in ps.items()} for t, ps in offsets.items()},
                                              sort_keys=True),
                  SUMMARY_COMMIT: str(commit)}
    if complete_through_ms is not None:
        properties[SUMMARY_COMPLETE_THROUGH] = str(complete_through_ms)
    return properties


@dataclass(frozen=True)
class SnapshotFacts:
    """What labelstore wrote into a snapshot's summary."""

    snapshot_id: int
    committed_at_ms: int
    commit: int
    offsets: dict[str, dict[int, int]]
    complete_through_ms: int | None
    added_records: int

    @classmethod
    def of(cls, snapshot) -> SnapshotFacts:
        summary = snapshot.summary.additional_properties if snapshot.summary else {}
        offsets = json.loads(summary.get(SUMMARY_OFFSETS, "{}"))
        complete = summary.get(SUMMARY_COMPLETE_THROUGH)
        return cls(snapshot.snapshot_id, snapshot.timestamp_ms, int(summary.get(SUMMARY_COMMIT, 0)),
                   {t: {int(p): o for p, o in ps.items()} for t, ps in offsets.items()},
                   int(complete) if complete else None, int(summary.get("added-records", 0)))


def data_files(table: Table, snapshot_id: int | None = None) -> list[Path]:
    """The data files a snapshot (default: the current one) reads, as local paths."""
    if snapshot_id is None and table.current_snapshot() is None:
        return []
    return [_local(task.file.file_path) for task in table.scan(snapshot_id=snapshot_id).plan_files()]


def _local(location: str) -> Path:
    parsed = urlparse(location)
    if parsed.scheme not in ("", "file"):
        raise ValueError(f"{location}: only local data files are read here")
    return Path(unquote(parsed.path))
