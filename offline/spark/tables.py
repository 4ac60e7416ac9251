"""The warehouse's tables as Spark temp views: the one function that knows where they are.

``register_tables`` creates ``events`` and ``label_versions`` with the columns of the DuckDB views
(``Warehouse.create_views``): the table columns plus ``date``, the day of ``recorded_at`` as text,
and ``labels``, each version once. Everything else in ``offline.spark`` reads only these views.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa

from labelstore.offline.spark.catalog import CATALOG, reads_through_catalog
from labelstore.warehouse import DATASETS, UTC_MS, Warehouse

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

SPARK_TYPES = {pa.string(): "STRING", pa.binary(): "BINARY", pa.int32(): "INT", pa.int64(): "BIGINT", UTC_MS: "TIMESTAMP"}


def register_tables(spark: SparkSession, warehouse: Warehouse) -> None:
    """Temp views ``events``, ``label_versions`` and ``labels`` over the warehouse, in ``spark``."""
    for dataset in DATASETS:
        read_dataset(spark, warehouse, dataset).createOrReplaceTempView(dataset)
    unique_versions(spark.table("label_versions")).drop("date").createOrReplaceTempView("labels")


def unique_versions(versions: DataFrame) -> DataFrame:
    """As DuckDB's ``labels``: a version the processor emitted twice (same version_id) counts once."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    first = Window.partitionBy("version_id").orderBy("recorded_at", "cause_offset")
    return versions.withColumn("__copy", F.row_number().over(first)).where("__copy = 1").drop("__copy")


def dataset_schema(dataset: str) -> str:
    """The dataset's columns as a Spark DDL schema: file columns, then partition columns."""
    schema, partitions = DATASETS[dataset]
    return spark_ddl(schema) + "".join(f", `{name}` STRING" for name in partitions)


def spark_ddl(schema: pa.Schema) -> str:
    """An Arrow schema of warehouse columns as a Spark DDL schema."""
    return ", ".join(f"`{field.name}` {SPARK_TYPES[field.type]}" for field in schema)


def read_dataset(spark: SparkSession, warehouse: Warehouse, dataset: str) -> DataFrame:
    """A dataset's rows with the DuckDB view's columns, at the table's current (or pinned) snapshot:
    through the session's Iceberg catalog when it is this warehouse's, else the snapshot's data
    files as pyiceberg plans them (local files); an empty, typed frame before the first commit."""
    from pyspark.sql import functions as F

    schema, partitions = DATASETS[dataset]
    columns = [*schema.names, partitions[0]]
    table = warehouse.table(dataset)
    if table is None or table.current_snapshot() is None:
        return spark.createDataFrame([], dataset_schema(dataset))
    if reads_through_catalog(spark, warehouse):
        reader = spark.read
        if dataset in warehouse.pinned:
            reader = reader.option("versionAsOf", str(warehouse.pinned[dataset]))
        rows = reader.table(f"{CATALOG}.{warehouse.namespace}.{dataset}").select(*columns)
    else:
        files = [path.as_posix() for path in warehouse.data_files(dataset)]
        ddl = spark_ddl(schema) + f", `{partitions[0]}` STRING"
        rows = spark.read.schema(ddl).parquet(*files) if files else spark.createDataFrame([], ddl)
    # The day reads as ``date``, as DuckDB's views (and the former Hive folders) name it.
    day = F.date_from_unix_date(F.floor(F.unix_millis("recorded_at") / 86_400_000).cast("int")).cast("string")
    return rows.withColumn("date", day)
