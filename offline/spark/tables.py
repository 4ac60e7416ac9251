"""The warehouse's tables as Spark temp views: the one function that knows where they are.

``register_tables`` creates ``events`` and ``label_versions`` with the columns of the DuckDB views
(``Warehouse.create_views``): the file columns plus the Hive partition columns, as strings
(``entity_type``/``date``, ``label``/``date``), and ``labels``, each version once. Everything
else in ``offline.spark`` reads only these views, so pointing them at other storage (Iceberg
tables through a Spark catalog) changes this module alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa

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
    """A dataset's rows with the DuckDB view's columns; an empty, typed frame before the first file."""
    if hasattr(warehouse, "data_files"):  # Iceberg tables: the files of their current snapshots
        return _snapshot_files(spark, warehouse, dataset)
    schema = dataset_schema(dataset)
    if not warehouse.has_files(dataset):
        return spark.createDataFrame([], schema)
    # Hive-partitioned Parquet. The schema is given, partition columns included, so Spark reads
    # ``date=2026-01-01`` as the text it is (as DuckDB's hive_types_autocast = false) instead of a date.
    folder = warehouse.dataset_dir(dataset).as_posix()
    return spark.read.schema(schema).option("basePath", folder).parquet(folder)


def _snapshot_files(spark: SparkSession, warehouse: Warehouse, dataset: str) -> DataFrame:
    """The data files of the table's current snapshot (append-only tables: no delete files), which
    hold the partition column; the day reads as ``date``, as Hive folders named it."""
    from pyspark.sql import functions as F

    schema, partitions = DATASETS[dataset]
    files = [path.as_posix() for path in warehouse.data_files(dataset)]
    columns = spark_ddl(schema) + f", `{partitions[0]}` STRING"
    rows = spark.read.schema(columns).parquet(*files) if files else spark.createDataFrame([], columns)
    day = F.date_from_unix_date(F.floor(F.unix_millis("recorded_at") / 86_400_000).cast("int")).cast("string")
    return rows.withColumn("date", day)
