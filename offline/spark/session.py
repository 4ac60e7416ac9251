"""The SparkSession the Spark engine runs on: one per process, made from ``SparkSettings``."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from labelstore.errors import LabelstoreError
from labelstore.offline.spark.catalog import catalog_config, merged_packages

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from labelstore.settings import SparkSettings
    from labelstore.warehouse import Warehouse


class SparkUnavailableError(LabelstoreError):
    """pyspark (or Java) is missing; the message says what to install."""


# Settings every query relies on, whatever the user configures: times are compared and returned
# in UTC (as DuckDB's connection does), and Arrow carries data between Python and the JVM.
FIXED = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.ansi.enabled": "false",  # DuckDB-like NULL on a bad cast in a rule, not an error
}


def spark_session(settings: SparkSettings | None = None, *, warehouse: Warehouse | None = None) -> SparkSession:
    """The active session if there is one (a notebook's, a test's), else a new one from ``settings``
    (default: ``Settings().spark``, i.e. labelstore.yaml's ``spark:`` or ``LABELSTORE_SPARK__*``),
    with ``warehouse``'s Iceberg catalog (``catalog.catalog_config``) when one is given."""
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise SparkUnavailableError("the Spark engine needs pyspark: pip install 'labelstore[spark]' "
                                    "(and Java 17 on the PATH)") from exc
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    if settings is None:
        from labelstore.settings import Settings

        settings = Settings().spark
    # Python workers must run this interpreter (pyarrow, labelstore); pyspark reads it from here.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = (SparkSession.builder.master(settings.master).appName("labelstore")
               .config("spark.driver.memory", settings.driver_memory)
               .config("spark.sql.shuffle.partitions", str(settings.shuffle_partitions))
               .config("spark.ui.showConsoleProgress", "false"))
    options = {**settings.config, **FIXED}
    if warehouse is not None:
        iceberg = catalog_config(warehouse)
        options = {**iceberg, **options, "spark.jars.packages": merged_packages(
            iceberg["spark.jars.packages"], settings.config.get("spark.jars.packages"))}
    for key, value in options.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()
