"""The offline warehouse: Hive-partitioned Parquet written by the materializer, read by offline/.

    <root>/events/entity_type=<entity type>/date=YYYY-MM-DD/part-*.parquet   every event, as archived
    <root>/label_versions/label=<label>/date=YYYY-MM-DD/part-*.parquet      every label version emitted
    <root>/_commits/<seq>.json                                            what each commit made visible
    <root>/labelstore.duckdb                                              views over the Parquet, for SQL

A file is visible once it sits under its dataset folder; the materializer stages files elsewhere
and moves them in only after a commit record names them (see ``materializers.commits``). The last
commit record holds the next Kafka offset of every partition archived so far.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa

if TYPE_CHECKING:
    from labelstore.repository import Repository

UTC_MS = pa.timestamp("ms", tz="UTC")

EVENTS_SCHEMA = pa.schema([
    ("event_id", pa.string()),
    ("entity_id", pa.string()),
    ("event_type", pa.string()),
    ("event_time", UTC_MS),
    ("recorded_at", UTC_MS),  # the broker's log-append time: when the system knew the event
    ("source", pa.string()),
    ("payload", pa.string()),  # JSON, for people reading the archive with SQL
    ("topic", pa.string()),
    ("partition", pa.int32()),
    ("offset", pa.int64()),
    ("avro", pa.binary()),  # the bytes as published: the re-fold decodes exactly what the processor did
])

LABEL_VERSIONS_SCHEMA = pa.schema([
    ("version_id", pa.string()),
    ("entity_type", pa.string()),
    ("entity_id", pa.string()),
    ("rule_version", pa.int32()),
    ("value", pa.string()),  # text of the value; rules declare the type (see ``value_text``)
    ("previous_value", pa.string()),
    ("event_time", UTC_MS),
    ("recorded_at", UTC_MS),
    ("event_id", pa.string()),
    ("cause_topic", pa.string()),
    ("cause_partition", pa.int32()),
    ("cause_offset", pa.int64()),
])

# Hive partition columns of each dataset, beside the file columns above.
DATASETS: dict[str, tuple[pa.Schema, tuple[str, ...]]] = {
    "events": (EVENTS_SCHEMA, ("entity_type", "date")),
    "label_versions": (LABEL_VERSIONS_SCHEMA, ("label", "date")),
}


def value_text(value: Any) -> str | None:
    """A label value as stored: strings as they are, booleans and numbers as JSON text."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value)


@dataclass(frozen=True)
class Commit:
    sequence: int
    files: tuple[str, ...]
    offsets: dict[str, dict[int, int]]  # topic -> partition -> next offset to archive
    # Every record the brokers logged before this time (epoch ms) is archived: the materializer
    # had reached the end of every partition. None when it was behind.
    complete_through_ms: int | None = None

    def to_json(self) -> str:
        return json.dumps({"sequence": self.sequence, "files": list(self.files),
                           "offsets": {t: {str(p): o for p, o in ps.items()} for t, ps in self.offsets.items()},
                           "complete_through_ms": self.complete_through_ms})

    @classmethod
    def from_json(cls, text: str) -> Commit:
        data = json.loads(text)
        offsets = {t: {int(p): o for p, o in ps.items()} for t, ps in data["offsets"].items()}
        return cls(data["sequence"], tuple(data["files"]), offsets, data.get("complete_through_ms"))


class Warehouse:
    """A warehouse belongs to a label repository: its declarations and rules re-fold the archive."""

    def __init__(self, root: Path | str, *, repository: Repository | None = None) -> None:
        self.root = Path(root).resolve()
        self._repository = repository

    @property
    def repository(self) -> Repository:
        """The repository given, else the current one (found like git finds its folder)."""
        if self._repository is None:
            from labelstore.repository import current

            self._repository = current()
        return self._repository

    @property
    def commits_dir(self) -> Path:
        return self.root / "_commits"

    @property
    def staging_dir(self) -> Path:
        return self.root / "_staging"

    @property
    def snapshots_dir(self) -> Path:
        return self.root / "snapshots"

    @property
    def duckdb_path(self) -> Path:
        return self.root / "labelstore.duckdb"

    def dataset_dir(self, dataset: str) -> Path:
        return self.root / dataset

    def last_commit(self) -> Commit | None:
        records = sorted(self.commits_dir.glob("*.json")) if self.commits_dir.exists() else []
        return Commit.from_json(records[-1].read_text()) if records else None

    def offsets(self) -> dict[str, dict[int, int]]:
        """Next offset to archive per topic and partition (empty before the first commit)."""
        commit = self.last_commit()
        return commit.offsets if commit else {}

    def has_files(self, dataset: str) -> bool:
        return any(self.dataset_dir(dataset).glob("**/*.parquet"))

    def relation_sql(self, dataset: str) -> str:
        """A FROM-clause source for a dataset; typed and empty before its first file."""
        schema, partitions = DATASETS[dataset]
        if self.has_files(dataset):
            glob = (self.dataset_dir(dataset) / "**" / "*.parquet").as_posix().replace("'", "''")
            return f"read_parquet('{glob}', hive_partitioning = true, hive_types_autocast = false)"
        columns = [f'CAST(NULL AS {_duckdb_type(f.type)}) AS "{f.name}"' for f in schema]
        columns += [f'CAST(NULL AS VARCHAR) AS "{name}"' for name in partitions]
        return f"(SELECT {', '.join(columns)} WHERE false)"

    def connect(self, database: str = ":memory:") -> duckdb.DuckDBPyConnection:
        """A DuckDB connection with the warehouse's views (see ``create_views``)."""
        connection = duckdb.connect(database)
        connection.execute("SET enable_progress_bar = false")
        connection.execute("SET TimeZone = 'UTC'")
        self.create_views(connection)
        return connection

    def create_views(self, connection: duckdb.DuckDBPyConnection) -> None:
        """``events`` and ``label_versions`` as archived; ``labels``: label versions once each.

        The processor may emit a version twice after a crash (same ``version_id``); ``labels``
        keeps the first, so a duplicate never becomes a second version.
        """
        for dataset in DATASETS:
            connection.execute(f"CREATE OR REPLACE VIEW {dataset} AS SELECT * FROM {self.relation_sql(dataset)}")
        connection.execute("""
            CREATE OR REPLACE VIEW labels AS
            SELECT * EXCLUDE (date) FROM label_versions
            QUALIFY row_number() OVER (PARTITION BY version_id ORDER BY recorded_at, cause_offset) = 1
        """)


def _duckdb_type(arrow_type: pa.DataType) -> str:
    if arrow_type == UTC_MS:
        return "TIMESTAMPTZ"
    return {pa.string(): "VARCHAR", pa.binary(): "BLOB", pa.int32(): "INTEGER", pa.int64(): "BIGINT"}[arrow_type]
