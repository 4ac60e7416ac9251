"""Spark reads the warehouse's Iceberg tables through Iceberg's own Spark catalog.

The catalog is the warehouse's: the same SQL database (SQLite or PostgreSQL, read by Iceberg's
JDBC catalog) or the same REST catalog. Iceberg's JDBC catalog finds tables under its own name,
and pyiceberg recorded them under ``labelstore``: the Spark catalog has that name too, so a table
reads as ``labelstore.<namespace>.<table>``. The runtime and the JDBC driver are Maven artifacts
Spark fetches when the session starts (``spark.jars.packages``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy.engine import make_url

from labelstore.errors import LabelstoreError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from labelstore.warehouse import Warehouse

CATALOG = "labelstore"  # the name pyiceberg's catalog gives the tables (labelstore.iceberg.open_catalog)
ICEBERG_RUNTIME = "org.apache.iceberg:iceberg-spark-runtime-4.1_2.13:1.12.0"  # for Spark 4.1, Scala 2.13
JDBC_DRIVERS = {"sqlite": "org.xerial:sqlite-jdbc:3.54.1.0", "postgresql": "org.postgresql:postgresql:42.7.14"}
PREFIX = f"spark.sql.catalog.{CATALOG}"


def catalog_config(warehouse: Warehouse) -> dict[str, str]:
    """Session options that make ``labelstore`` the warehouse's Iceberg catalog in Spark."""
    url = warehouse.catalog_url or f"sqlite:///{warehouse.root / 'catalog.sqlite'}"
    config = {PREFIX: "org.apache.iceberg.spark.SparkCatalog", f"{PREFIX}.warehouse": warehouse.root.as_uri()}
    packages = [ICEBERG_RUNTIME]
    if url.startswith(("http://", "https://")):
        config |= {f"{PREFIX}.type": "rest", f"{PREFIX}.uri": url}
    else:
        parsed = make_url(url)
        backend = parsed.get_backend_name()
        if backend == "sqlite":
            config[f"{PREFIX}.uri"] = f"jdbc:sqlite:{parsed.database}"
        elif backend == "postgresql":
            config[f"{PREFIX}.uri"] = f"jdbc:postgresql://{parsed.host}:{parsed.port or 5432}/{parsed.database}"
            config |= {f"{PREFIX}.jdbc.user": parsed.username or "",
                       **({f"{PREFIX}.jdbc.password": parsed.password} if parsed.password else {})}
        else:
            raise LabelstoreError(f"Spark reads an Iceberg SQL catalog on SQLite or PostgreSQL, not {backend} "
                                  f"(warehouse.catalog_url): use one of those or a REST catalog")
        config |= {f"{PREFIX}.type": "jdbc", f"{PREFIX}.jdbc.schema-version": "V1"}  # pyiceberg's table layout
        packages.append(JDBC_DRIVERS[backend])
    config["spark.jars.packages"] = ",".join(packages)
    return config


def reads_through_catalog(spark: SparkSession, warehouse: Warehouse) -> bool:
    """Whether the session's ``labelstore`` catalog is this warehouse's (a session made for another
    one, or without it, reads the files of the tables' snapshots instead: ``tables.read_dataset``)."""
    expected = catalog_config(warehouse)
    return all(spark.conf.get(key, None) == expected[key] for key in (f"{PREFIX}.warehouse", f"{PREFIX}.uri"))


def merged_packages(*lists: str | None) -> str:
    return ",".join(dict.fromkeys(p for packages in lists if packages for p in packages.split(",") if p))
