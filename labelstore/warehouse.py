"""The offline warehouse: Apache Iceberg tables written by the materializer, read by offline/.

    <root>/catalog.sqlite                                     the Iceberg catalog (unless catalog_url names another)
    <root>/events/data/entity_type=<type>/date=<day>/*.parquet          every event, as archived
    <root>/label_versions/data/label=<label>/date=<day>/*.parquet       every label version emitted
    <root>/<table>/metadata/                                  Iceberg metadata: snapshots, manifests
    <root>/labelstore.duckdb                                  views over the current snapshots, for SQL

A record is visible once a snapshot of its table names its file; each snapshot's summary holds the
next Kafka offset of every partition of the topics archived into that table (see
``labelstore.iceberg`` and ``materializers.commits``). Spark, Trino or any Iceberg reader reads the
same tables through the catalog; DuckDB reads the files of a snapshot.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa

from labelstore import iceberg
from labelstore.errors import LabelstoreError

if TYPE_CHECKING:
    from labelstore.repository import Repository
    from labelstore.settings import Settings

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

# Partition columns of each dataset, beside the columns above: a table column, then the day.
DATASETS: dict[str, tuple[pa.Schema, tuple[str, ...]]] = {
    "events": (EVENTS_SCHEMA, ("entity_type", "date")),
    "label_versions": (LABEL_VERSIONS_SCHEMA, ("label", "date")),
}
LAYOUTS = {dataset: iceberg.Layout(schema, partitions[0]) for dataset, (schema, partitions) in DATASETS.items()}


def value_text(value: Any) -> str | None:
    """A label value as stored: strings as they are, booleans and numbers as JSON text."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value)


@dataclass(frozen=True)
class Commit:
    """The warehouse's position: what the tables' current snapshots say.

    Each table's snapshot holds the offsets of the topics archived into it; together they are the
    next offset to archive of every partition. ``sequence`` counts the materializer's commits.
    """

    sequence: int
    offsets: dict[str, dict[int, int]]  # topic -> partition -> next offset to archive
    # Every record the brokers logged before this time (epoch ms) is archived: the materializer
    # had reached the end of every partition. None when it was behind.
    complete_through_ms: int | None = None
    snapshots: dict[str, int] = field(default_factory=dict)  # table -> current Iceberg snapshot id
    committed_at_ms: int | None = None


class Warehouse:
    """A warehouse belongs to a label repository: its declarations and rules re-fold the archive.

    Its tables live in an Iceberg catalog: by default a SQLite file in ``root``, else
    ``catalog_url`` (see ``labelstore.iceberg``); DuckDB reads the files of their snapshots.
    """

    def __init__(self, root: Path | str, *, repository: Repository | None = None, catalog_url: str | None = None,
                 namespace: str = "labelstore") -> None:
        self.root = Path(root).resolve()
        self._repository = repository
        self.catalog_url = catalog_url
        self.namespace = namespace
        self.pinned: dict[str, int] = {}  # table -> snapshot id read instead of the current one
        self._catalog = None

    @classmethod
    def of(cls, settings: Settings) -> Warehouse:
        conf = settings.warehouse
        return cls(conf.path, repository=settings.repository, catalog_url=conf.catalog_url, namespace=conf.namespace)

    def at(self, snapshots: Mapping[str, int]) -> Warehouse:
        """This warehouse as it was at the given snapshots (table -> Iceberg snapshot id): every
        query through it reads those, whatever is committed later."""
        pinned = copy.copy(self)
        pinned.pinned = {**self.pinned, **snapshots}
        return pinned

    def current_snapshots(self) -> dict[str, int]:
        """The snapshot each table reads now (pinned or current); tables without one are left out."""
        ids = {}
        for dataset in DATASETS:
            table = self.table(dataset)
            snapshot = table.current_snapshot() if table is not None else None
            if dataset in self.pinned or snapshot is not None:
                ids[dataset] = self.pinned.get(dataset, snapshot.snapshot_id if snapshot else None)
        return ids

    @property
    def repository(self) -> Repository:
        """The repository given, else the current one (found like git finds its folder)."""
        if self._repository is None:
            from labelstore.repository import current

            self._repository = current()
        return self._repository

    @property
    def snapshots_dir(self) -> Path:
        return self.root / "snapshots"

    @property
    def duckdb_path(self) -> Path:
        return self.root / "labelstore.duckdb"

    def dataset_dir(self, dataset: str) -> Path:
        """Where a table keeps its data and metadata files."""
        return self.root / dataset

    # -- the Iceberg tables
    def table(self, dataset: str, *, create: bool = False):
        """The dataset's Iceberg table; None if it does not exist (and ``create`` is not set)."""
        if (self.root / "_commits").is_dir():
            raise LabelstoreError(f"{self.root} holds an archive of the former layout (Parquet folders and _commits/): "
                                  "move it into Iceberg tables once with `labelstore warehouse migrate`")
        catalog = self._open_catalog(create)
        if catalog is None:
            return None
        identifier = f"{self.namespace}.{dataset}"
        table = iceberg.load_table(catalog, identifier)
        if table is None and create:
            table = iceberg.create_table(catalog, self.namespace, dataset, LAYOUTS[dataset], self.dataset_dir(dataset))
        return table

    def _open_catalog(self, create: bool):
        if self._catalog is None:
            url = self.catalog_url
            if url is None:
                path = self.root / "catalog.sqlite"
                if not create and not path.exists():
                    return None  # nothing archived yet: readers see empty tables, and leave no file behind
                self.root.mkdir(parents=True, exist_ok=True)
                url = f"sqlite:///{path}"
            self._catalog = iceberg.open_catalog(url, self.root)
        return self._catalog

    def append(self, dataset: str, rows: pa.Table) -> int:
        """Rows written straight into a table, in one snapshot without Kafka offsets (imports, tests,
        benchmarks; the materializer commits its own). ``rows``: the dataset's columns and its
        partition column (``entity_type`` or ``label``). Returns the snapshot id."""
        table = self.table(dataset, create=True)
        table.append(LAYOUTS[dataset].to_iceberg(rows))
        return table.current_snapshot().snapshot_id

    def snapshot_facts(self, dataset: str) -> iceberg.SnapshotFacts | None:
        table = self.table(dataset)
        snapshot = table.current_snapshot() if table is not None else None
        return iceberg.SnapshotFacts.of(snapshot) if snapshot is not None else None

    def expire_snapshots(self, older_than: datetime) -> dict[str, int]:
        """Forget each table's snapshots made before ``older_than``: how many per table.

        The materializer makes one every flush interval, and every commit copies the table's
        metadata, so the list grows the commits' cost and the catalog. Tagged snapshots (those
        ``labelstore snapshot`` pinned) and each table's current one are kept. No data file
        goes: the tables are append-only, so the current snapshot names every file an older one
        did; what is lost is time travel to an untagged moment before ``older_than``."""
        expired = {}
        for dataset in DATASETS:
            table = self.table(dataset)
            if table is None:
                continue
            before = len(table.metadata.snapshots)
            table.maintenance.expire_snapshots().older_than(older_than).commit()
            expired[dataset] = before - len(table.refresh().metadata.snapshots)
        return expired

    def last_commit(self) -> Commit | None:
        facts = {dataset: self.snapshot_facts(dataset) for dataset in DATASETS}
        known = [f for f in facts.values() if f is not None]
        if not known:
            return None
        offsets: dict[str, dict[int, int]] = {}
        for fact in known:
            offsets.update(fact.offsets)
        # A table without a snapshot yet (read between the first commit's two tables) is complete through nothing.
        completes = [f.complete_through_ms if f is not None else None for f in facts.values()]
        return Commit(max(f.commit for f in known), offsets,
                      None if None in completes else min(completes),
                      {dataset: f.snapshot_id for dataset, f in facts.items() if f is not None},
                      max(f.committed_at_ms for f in known))

    def offsets(self) -> dict[str, dict[int, int]]:
        """Next offset to archive per topic and partition (empty before the first commit)."""
        commit = self.last_commit()
        return commit.offsets if commit else {}

    def data_files(self, dataset: str, snapshot_id: int | None = None) -> list[Path]:
        table = self.table(dataset)
        if table is None:
            return []
        return iceberg.data_files(table, snapshot_id if snapshot_id is not None else self.pinned.get(dataset))

    def has_files(self, dataset: str) -> bool:
        return bool(self.data_files(dataset))

    # -- SQL over them
    def relation_sql(self, dataset: str, snapshot_id: int | None = None) -> str:
        """A FROM-clause source for a dataset at a snapshot (default: current); typed and empty
        before its first file. The day a record is in reads as ``date``, as Hive folders named it."""
        schema, partitions = DATASETS[dataset]
        files = self.data_files(dataset, snapshot_id)
        if files:
            listed = ", ".join("'" + path.as_posix().replace("'", "''") + "'" for path in files)
            columns = ", ".join(f'"{name}"' for name in [*schema.names, partitions[0]])
            return (f"(SELECT {columns}, strftime(timezone('UTC', recorded_at), '%Y-%m-%d') AS date "
                    f"FROM read_parquet([{listed}]))")
        columns = [f'CAST(NULL AS {_duckdb_type(f.type)}) AS "{f.name}"' for f in schema]
        columns += [f'CAST(NULL AS VARCHAR) AS "{name}"' for name in partitions]
        return f"(SELECT {', '.join(columns)} WHERE false)"

    def connect(self, database: str = ":memory:", *, snapshots: Mapping[str, int] | None = None
                ) -> duckdb.DuckDBPyConnection:
        """A DuckDB connection with the warehouse's views (see ``create_views``), at the tables'
        current (or pinned, see ``at``) snapshots, or at the ``snapshots`` given (table -> id)."""
        connection = duckdb.connect(database)
        connection.execute("SET enable_progress_bar = false")
        connection.execute("SET TimeZone = 'UTC'")
        self.create_views(connection, snapshots=snapshots)
        return connection

    def create_views(self, connection: duckdb.DuckDBPyConnection, *, snapshots: Mapping[str, int] | None = None
                     ) -> None:
        """``events`` and ``label_versions`` as archived; ``labels``: label versions once each.

        The processor may emit a version twice after a crash (same ``version_id``); ``labels``
        keeps the first, so a duplicate never becomes a second version.
        """
        for dataset in DATASETS:
            source = self.relation_sql(dataset, (snapshots or {}).get(dataset))
            connection.execute(f"CREATE OR REPLACE VIEW {dataset} AS SELECT * FROM {source}")
        connection.execute("""
            CREATE OR REPLACE VIEW labels AS
            SELECT * EXCLUDE (date) FROM label_versions
            QUALIFY row_number() OVER (PARTITION BY version_id ORDER BY recorded_at, cause_offset) = 1
        """)


def _duckdb_type(arrow_type: pa.DataType) -> str:
    if arrow_type == UTC_MS:
        return "TIMESTAMPTZ"
    return {pa.string(): "VARCHAR", pa.binary(): "BLOB", pa.int32(): "INTEGER", pa.int64(): "BIGINT"}[arrow_type]
