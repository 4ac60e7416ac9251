"""The valid axis on Spark: the archived events re-folded by the shared fold, per group of entities.

Spark shuffles an entity type's events into buckets by entity id (all of an entity's events in
one bucket) and hands each bucket to a Python worker as an Arrow table; the worker runs exactly
what the DuckDB engine runs on the whole archive: ``state_history`` (the processor's fold, in
business-time order) and ``label_history`` (the rules, then one version per change). Nothing of
the fold is written again in Spark SQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa

from labelstore.declarations import EntityDeclaration
from labelstore.offline.history import label_history, state_history
from labelstore.rules.model import LabelRule
from labelstore.schemas.codec import AvroCodec
from labelstore.offline.spark.tables import spark_ddl
from labelstore.warehouse import LABEL_VERSIONS_SCHEMA, Warehouse

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

# What a bucket returns: label versions and their label, timestamps in Spark's unit (microseconds).
VERSIONS = pa.schema([field.with_type(pa.timestamp("us", tz="UTC")) if pa.types.is_timestamp(field.type) else field
                      for field in LABEL_VERSIONS_SCHEMA.append(pa.field("label", pa.string()))])
VERSIONS_DDL = spark_ddl(LABEL_VERSIONS_SCHEMA.append(pa.field("label", pa.string())))
EVENT_COLUMNS = ["entity_type", "entity_id", "event_id", "event_time", "recorded_at", "topic", "partition", "offset", "avro"]


@dataclass(frozen=True)
class _RefoldBucket:
    """Shipped to the executors (pickled): what a worker needs to fold one bucket of entities."""

    declaration: EntityDeclaration
    schema_set: object  # the repository's SchemaSet: the codec is rebuilt from it on the worker
    rules: tuple[LabelRule, ...]

    def __call__(self, events: pa.Table) -> pa.Table:
        connection = duckdb.connect()
        try:
            connection.execute("SET enable_progress_bar = false")
            connection.register("events", events)
            states = state_history(connection, self.declaration, order="valid", codec=AvroCodec(self.schema_set))
        finally:
            connection.close()
        versions = label_history(states, self.declaration.entity_type, list(self.rules), self.declaration)
        return versions.cast(VERSIONS)


def valid_versions(spark: SparkSession, warehouse: Warehouse, rules: list[LabelRule], entity_type: str,
                   known_at: datetime | None) -> DataFrame:
    """The rules' label versions by business time (the DuckDB engine's ``valid_versions``), built from
    the ``events`` view; ``known_at``: only the events recorded by then (inclusive)."""
    from pyspark.sql import functions as F

    repository = warehouse.repository
    events = spark.table("events").where(F.col("entity_type") == entity_type)
    if known_at is not None:  # filtered before the shuffle, as state_history(known_at=...) would after it
        events = events.where(F.col("recorded_at") <= F.lit(known_at))
    buckets = int(spark.conf.get("spark.sql.shuffle.partitions"))
    bucketed = events.select(*EVENT_COLUMNS).withColumn("__bucket", F.pmod(F.xxhash64("entity_id"), F.lit(buckets)))
    job = _RefoldBucket(repository.declarations[entity_type], repository.schema_set, tuple(rules))

    def fold(events: pa.Table) -> pa.Table:  # a function of one argument: pyspark passes no group key then
        return job(events)

    return bucketed.groupBy("__bucket").applyInArrow(fold, schema=VERSIONS_DDL)
