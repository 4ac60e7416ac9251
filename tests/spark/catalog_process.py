"""A Spark session of its own (a new JVM) that reads a warehouse through Iceberg's Spark catalog.

    python -m tests.spark.catalog_process <warehouse root> <folder with spine.parquet>

Writes answer.parquet (as_of on Spark for the spine), pinned.parquet (the same at the first
events snapshot) and counts.json (rows per table as Spark's catalog reads them) into the folder.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pyarrow.parquet as pq

from labelstore.offline.asof import as_of
from labelstore.offline.spark.catalog import reads_through_catalog
from labelstore.offline.spark.session import spark_session
from labelstore.settings import SparkSettings
from labelstore.warehouse import Warehouse
from tests.fraud_example import EXAMPLE


def main(root: Path, folder: Path) -> None:
    warehouse = Warehouse(root, repository=EXAMPLE)
    spark = spark_session(SparkSettings(master="local[1]", shuffle_partitions=2, driver_memory="1g",
                                        config={"spark.ui.enabled": "false"}), warehouse=warehouse)
    assert reads_through_catalog(spark, warehouse), "the session's labelstore catalog is not the warehouse's"
    spine = pq.read_table(folder / "spine.parquet")
    pq.write_table(as_of(warehouse, ["fraud", "manual_review"], spine=spine, known_at="ts", engine="spark"),
                   folder / "answer.parquet")
    first = json.loads((folder / "pinned.json").read_text())
    pq.write_table(as_of(warehouse.at(first), "fraud", spine=spine, known_at="ts", engine="spark"),
                   folder / "pinned.parquet")
    counts = {table: spark.table(f"labelstore.{warehouse.namespace}.{table}").count()
              for table in ("events", "label_versions")}
    (folder / "counts.json").write_text(json.dumps(counts))
    spark.stop()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
