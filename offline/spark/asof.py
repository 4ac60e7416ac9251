"""``as_of`` on Spark: the same questions, semantics and answers as ``labelstore.offline.asof``.

Spark has no ASOF JOIN, so a spine is answered the sort-based way: spine rows and label versions
in one frame, partitioned by entity and label, ordered by time, and every spine row takes the
last version before it. The order decides the boundaries and ties exactly as the DuckDB engine
does: versions at a spine row's time sort before it (inclusive ``<=``), and versions at one time
sort in log order (known axis: ``cause_offset``; valid axis: ``recorded_at, cause_partition,
cause_offset``), so the last one in the log wins. The version is carried as a struct, so a version
whose value is NULL (a label that stopped) is found as the NULL it is.

Only the spine's key columns travel to Spark, numbered; the answers come back as Arrow, are put
in spine order on the driver and appended to the spine's own columns, which never leave Python.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from labelstore.offline.asof import (
    Maturity, Output, QueryError, TimeArg, _as_arrow, _one_entity_type, _rules_for, _spine_time, convert, instant,
)
from labelstore.offline.backfill import backfilled
from labelstore.offline.spark.refold import valid_versions
from labelstore.offline.spark.session import spark_session
from labelstore.offline.spark.tables import register_tables, spark_ddl, unique_versions
from labelstore.rules.model import LabelRule
from labelstore.warehouse import LABEL_VERSIONS_SCHEMA, Warehouse

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

SPARK_SQL_TYPES = {"string": "STRING", "boolean": "BOOLEAN", "long": "BIGINT", "double": "DOUBLE"}
ARROW_TYPES = {"string": pa.string(), "boolean": pa.bool_(), "long": pa.int64(), "double": pa.float64()}
UTC_US = pa.timestamp("us", tz="UTC")


@dataclass(frozen=True)
class _Axis:
    """Label versions (with a ``label`` column) and how they are ordered in time."""

    versions: DataFrame
    time: str  # compared with the query time
    ties: tuple[str, ...]  # ascending: the last version in this order wins among equal times


def as_of_spark(
    warehouse: Warehouse,
    labels: str | Sequence[str],
    *,
    known_at: TimeArg = None,
    valid_at: TimeArg = None,
    entity_ids: Sequence[str] | None = None,
    spine: Any = None,
    entity_column: str = "entity_id",
    maturity: Maturity = "all",
    rules: Sequence[LabelRule] | None = None,
    rule_versions: Mapping[str, int] | None = None,
    output: Output = "arrow",
    spark: SparkSession | None = None,
) -> Any:
    """``labelstore.offline.asof.as_of`` computed by Spark (see there for the arguments); ``spark``:
    a session to use (default: the active one, else one from ``SparkSettings``)."""
    names = [labels] if isinstance(labels, str) else list(labels)
    chosen = _rules_for(names, warehouse.repository.initial_rules() if rules is None else rules, rule_versions or {})
    entity_type = _one_entity_type(chosen)
    if maturity not in ("all", "mature", "flag"):
        raise QueryError(f"maturity must be all, mature or flag, not {maturity!r}")
    spark = spark or spark_session(warehouse=warehouse)
    register_tables(spark, warehouse)
    from_backfills = {rule.name for rule in chosen if rule.name in (rule_versions or {})}
    query = _Query(spark, warehouse, chosen, entity_type, maturity, from_backfills)
    if spine is not None:
        table = query.spine_join(_as_arrow(spine), entity_column, known_at, valid_at)
    else:
        table = query.point(entity_ids, instant(known_at, "known_at"), instant(valid_at, "valid_at"))
    return convert(table, output)


@dataclass
class _Query:
    spark: SparkSession
    warehouse: Warehouse
    rules: list[LabelRule]
    entity_type: str
    maturity: Maturity
    from_backfills: set[str]

    def axis(self, known_at: datetime | None, valid_at: datetime | None) -> _Axis:
        """The known axis reads what the processor emitted; the valid axis re-folds the archive."""
        if valid_at is None:
            parts = [self.known_versions(rule) for rule in self.rules]
            union = parts[0]
            for part in parts[1:]:
                union = union.unionByName(part)
            return _Axis(union, "recorded_at", ("cause_offset",))
        versions = valid_versions(self.spark, self.warehouse, self.rules, self.entity_type, known_at)
        return _Axis(versions, "event_time", ("recorded_at", "cause_partition", "cause_offset"))

    def known_versions(self, rule: LabelRule) -> DataFrame:
        """What the processor emitted for the rule's label, or a backfilled history of its version."""
        from pyspark.sql import functions as F

        if rule.name not in self.from_backfills:
            versions = self.spark.table("label_versions").where(F.col("label") == rule.name).drop("date")
        else:
            path = backfilled(self.warehouse, rule.name, rule.version)
            if path is None:
                raise QueryError(f"{rule.key} has no backfilled history yet: "
                                 f"run `labelstore rules backfill {rule.name} --version {rule.version}`")
            versions = self.spark.read.schema(spark_ddl(LABEL_VERSIONS_SCHEMA)).parquet(path.as_posix())
            versions = versions.withColumn("label", F.lit(rule.name))
        return versions.where((F.col("entity_type") == self.entity_type) & F.col("recorded_at").isNotNull())

    def first_seen(self) -> DataFrame | None:
        """Each entity's earliest archived event_time (epoch ms); needed for maturity only."""
        if self.maturity == "all":
            return None
        from pyspark.sql import functions as F

        events = self.spark.table("events").where(F.col("entity_type") == self.entity_type)
        return events.groupBy("entity_id").agg(F.unix_millis(F.min("event_time")).alias("first_ms"))

    def point(self, entity_ids: Sequence[str] | None, known_at: datetime | None, valid_at: datetime | None) -> pa.Table:
        axis = self.axis(known_at, valid_at)
        if valid_at is None:
            axis = _Axis(unique_versions(axis.versions), axis.time, axis.ties)  # as DuckDB's ``labels`` view
        at = valid_at if valid_at is not None else known_at
        versions = axis.versions.cache()
        try:
            return pa.concat_tables([self.point_rule(versions, axis, rule, entity_ids, at) for rule in self.rules])
        finally:
            versions.unpersist()

    def point_rule(self, versions: DataFrame, axis: _Axis, rule: LabelRule, entity_ids: Sequence[str] | None,
                   at: datetime | None) -> pa.Table:
        from pyspark.sql import Window
        from pyspark.sql import functions as F

        chosen = versions.where(F.col("label") == rule.name)
        if at is not None:
            chosen = chosen.where(F.col(axis.time) <= F.lit(at))
        latest = Window.partitionBy("entity_id").orderBy(*(F.col(c).desc() for c in (axis.time, *axis.ties)))
        source = chosen.withColumn("__rank", F.row_number().over(latest)).where("__rank = 1")
        if entity_ids is not None:
            wanted = self.spark.createDataFrame([(entity_id,) for entity_id in entity_ids], "entity_id STRING")
            source = wanted.join(source, "entity_id", "left")
        first = self.first_seen()
        if first is not None:
            source = source.join(first, "entity_id", "left")
        mature = _mature(rule, F.lit(at) if at is not None else F.current_timestamp())
        if self.maturity == "mature":
            source = source.where(F.col("value").isNull() | mature)
        columns = [F.lit(self.entity_type).alias("entity_type"), "entity_id", F.lit(rule.name).alias("label"),
                   F.col("value").cast(SPARK_SQL_TYPES[rule.value_type]).alias("value"), "rule_version", "version_id",
                   "event_time", "recorded_at", "event_id"]
        if self.maturity == "flag":
            columns.append(mature.alias("mature"))
        return _to_arrow(source.select(*columns).orderBy("entity_id"), _point_schema(rule, self.maturity == "flag"))

    def spine_join(self, spine: pa.Table, entity_column: str, known_at: TimeArg, valid_at: TimeArg) -> pa.Table:
        column, fixed = _spine_time(spine, known_at, valid_at)
        if entity_column not in spine.column_names:
            raise QueryError(f"the spine has no column {entity_column!r} (columns: {', '.join(spine.column_names)})")
        if column == known_at:
            axis = self.axis(None, None)
        else:  # valid time from the spine, optionally as known at a fixed time
            axis = self.axis(instant(fixed, "known_at"), datetime.now(UTC))
        answers = self.answers(spine.column(entity_column), spine.column(column), axis)
        count = len(self.rules)
        for index, rule in enumerate(self.rules):
            every = pa.array(np.arange(index, answers.num_rows, count, dtype=np.int64))
            spine = spine.append_column(pa.field(rule.name, ARROW_TYPES[rule.value_type]),
                                        answers.column(f"v{index}").take(every))
            if self.maturity == "flag":
                spine = spine.append_column(pa.field(f"{rule.name}_mature", pa.bool_()), answers.column(f"m{index}").take(every))
        return spine

    def answers(self, entities: pa.ChunkedArray, times: pa.ChunkedArray, axis: _Axis) -> pa.Table:
        """One row per spine row and label, in (spine row, label) order: ``v<i>`` (and ``m<i>``)
        hold label i's value (and maturity) in its own rows, NULL elsewhere."""
        from pyspark.sql import functions as F

        keys = pa.table({"__entity": entities, "__at": times.cast(UTC_US, safe=False),
                         "__row": pa.array(np.arange(len(entities), dtype=np.int64))})
        asked = self.spark.createDataFrame(keys).crossJoin(self.spark.createDataFrame(
            [(index, rule.name) for index, rule in enumerate(self.rules)], "__label_index INT, __label STRING"))
        found = _asof(asked, axis)
        first = self.first_seen()
        if first is not None:
            found = found.join(first.withColumnRenamed("entity_id", "__entity"), "__entity", "left")
        columns: list[Column | str] = ["__row", "__label_index"]
        for index, rule in enumerate(self.rules):
            mine = F.col("__label_index") == index
            value = F.col("__value").cast(SPARK_SQL_TYPES[rule.value_type])
            mature = _mature(rule, F.col("__at"))
            if self.maturity == "mature":
                value = F.when(mature, value)
            columns.append(F.when(mine, value).alias(f"v{index}"))
            if self.maturity == "flag":
                columns.append(F.when(mine, mature).alias(f"m{index}"))
        table = found.select(*columns).toArrow()
        return table.sort_by([("__row", "ascending"), ("__label_index", "ascending")])


def _asof(asked: DataFrame, axis: _Axis) -> DataFrame:
    """Each asked row (``__entity, __label, __at``) with ``__value``: the label's value in force at
    ``__at`` (the last version at or before it, ties in log order), NULL if none."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    versions = axis.versions.select(
        F.col("entity_id").alias("__entity"), F.col("label").alias("__label"), F.col(axis.time).alias("__at"),
        F.lit(0).alias("__kind"), *axis.ties, F.struct(F.col("value")).alias("__version"))
    rows = asked.select("__entity", "__label", "__at", F.lit(1).alias("__kind"), "__row", "__label_index")
    both = versions.unionByName(rows, allowMissingColumns=True)
    before = (Window.partitionBy("__entity", "__label").orderBy("__at", "__kind", *axis.ties)
              .rowsBetween(Window.unboundedPreceding, Window.currentRow))
    found = both.withColumn("__found", F.last("__version", ignorenulls=True).over(before)).where("__kind = 1")
    return found.select("__row", "__label_index", "__entity", "__at",
                        F.when(F.col("__at").isNotNull(), F.col("__found.value")).alias("__value"))


def _mature(rule: LabelRule, at: Column) -> Column:
    """Mature: the maturity window, counted from the entity's first event, has passed at ``at``.
    Needs ``first_ms`` joined (``_Query.first_seen``)."""
    from pyspark.sql import functions as F

    if rule.maturity_days is None:
        return F.lit(True)
    window_ms = int(rule.maturity_days * 86_400_000)
    return F.coalesce(F.col("first_ms") + F.lit(window_ms) <= F.unix_millis(at), F.lit(False))


def _point_schema(rule: LabelRule, flag: bool) -> pa.Schema:
    fields = [("entity_type", pa.string()), ("entity_id", pa.string()), ("label", pa.string()),
              ("value", ARROW_TYPES[rule.value_type]), ("rule_version", pa.int32()), ("version_id", pa.string()),
              ("event_time", UTC_US), ("recorded_at", UTC_US), ("event_id", pa.string())]
    return pa.schema(fields + ([("mature", pa.bool_())] if flag else []))


def _to_arrow(frame: DataFrame, schema: pa.Schema) -> pa.Table:
    return frame.toArrow().cast(schema)

