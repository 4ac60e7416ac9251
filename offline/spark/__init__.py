"""The offline queries on Apache Spark: as-of on both time axes and rule backfills, for warehouses
that outgrow one machine. Same semantics and the same answers as the DuckDB engine (the default);
``as_of(..., engine="spark")`` and ``labelstore asof --engine spark`` select it.

- ``session``: the SparkSession, from ``SparkSettings`` (master URL, memory, more options);
- ``tables``: the one place that knows where the warehouse's tables are (``register_tables``);
- ``asof``: point queries and spine joins; the valid axis re-folds events with the shared fold
  (``refold``), run per group of entities on the executors;
- ``translate`` and ``backfill``: a rule's DuckDB expression in Spark SQL, over the state history.

Needs the ``spark`` extra (pyspark, sqlglot) and Java 17.
"""
