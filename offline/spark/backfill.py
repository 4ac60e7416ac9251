"""Rule backfills on Spark: the rule's SQL, translated, evaluated by Spark over the state history.

1. translate the rule (``translate.to_spark_sql``), refusing before any work what does not translate;
2. the state history labelstore keeps (``offline.backfill.load_states``: the shared fold, rebuilt
   only when the archive grew) is read by Spark from its Parquet file;
3. Spark evaluates the expression per state; values become text as ``label_history`` makes them
   (pyarrow's cast, in Arrow batches), and a sample of distinct inputs is checked against DuckDB;
4. a version wherever the value differs from the entity's previous state's (NULL counting as a
   value, as ``label_history``), its ``version_id`` from ``labelstore.labels.version_id``;
5. written where the DuckDB engine writes it, in the same layout and order, so as-of queries on
   either engine read it (``rule_versions=``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa

from labelstore.labels import version_id
from labelstore.offline.backfill import BackfillResult, Progress, _write_atomically, backfill_path, load_states, states_path
from labelstore.offline.spark.session import spark_session
from labelstore.offline.spark.translate import disagreement, refusal_from_spark, to_spark_sql
from labelstore.rules.evaluation import RuleEvaluator
from labelstore.rules.model import LabelRule
from labelstore.warehouse import LABEL_VERSIONS_SCHEMA, Warehouse

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

LOCATION = ["entity_id", "seq", "event_id", "event_time", "recorded_at", "topic", "partition", "offset"]
AGREEMENT_SAMPLE = 1000  # distinct inputs both engines evaluate before the backfill is trusted


def backfill_spark(warehouse: Warehouse, rule: LabelRule, *, progress: Progress | None = None,
                   spark: SparkSession | None = None) -> BackfillResult:
    """``offline.backfill.backfill`` with the rule evaluated by Spark; same result file."""
    translated = to_spark_sql(rule)
    declaration = warehouse.repository.declarations[rule.entity_type]
    state_rows = load_states(warehouse, declaration, progress).num_rows
    spark = spark or spark_session(warehouse=warehouse)
    if progress:
        progress(f"evaluating {rule.key} over {state_rows:,} states on Spark", 0.5)
    started = time.perf_counter()
    states = spark.read.parquet(states_path(warehouse, rule.entity_type).as_posix())
    evaluator = RuleEvaluator(declaration, [rule])
    typed = _evaluated(states, rule, translated, evaluator.fields)
    _check_agreement(typed, rule, evaluator)
    history = _versions(typed, rule).toArrow().cast(LABEL_VERSIONS_SCHEMA)
    path = backfill_path(warehouse, rule.name, rule.version)
    _write_atomically(history, path)
    if progress:
        progress("done", 1.0)
    return BackfillResult(rule, state_rows, history.num_rows, time.perf_counter() - started, path)


def _evaluated(states: DataFrame, rule: LabelRule, translated: str, fields: list[str]) -> DataFrame:
    """The states' locations, the fields the rule reads, and ``__typed``: the rule's value."""
    from pyspark.errors import AnalysisException, ParseException
    from pyspark.sql import functions as F

    try:
        typed = states.select(*LOCATION, *fields, F.expr(translated).alias("__typed"))
        typed.schema  # noqa: B018 - analysis happens here: a translation Spark cannot bind fails now
    except (AnalysisException, ParseException) as exc:
        raise refusal_from_spark(rule, translated, exc) from exc
    return typed


def _check_agreement(typed: DataFrame, rule: LabelRule, evaluator: RuleEvaluator) -> None:
    """DuckDB (the online evaluator) and Spark must give the same value on distinct inputs."""
    sample = typed.select(*evaluator.fields, "__typed").dropDuplicates(evaluator.fields).limit(AGREEMENT_SAMPLE).toArrow()
    expected = evaluator.evaluate_table(sample.select(evaluator.fields)).column(rule.name).cast(pa.string()).to_pylist()
    actual = sample.column("__typed").cast(pa.string()).to_pylist()
    for row, (want, got) in enumerate(zip(expected, actual, strict=True)):
        if want != got:
            inputs = {name: sample.column(name)[row].as_py() for name in evaluator.fields}
            raise disagreement(rule, inputs, want, got)


@dataclass(frozen=True)
class _AsText:
    """Label values as stored: the text pyarrow's cast gives, exactly as ``label_history`` makes it."""

    def __call__(self, batches):
        for batch in batches:
            value = batch.column(batch.schema.get_field_index("__typed")).cast(pa.string())
            columns = [batch.column(name) for name in LOCATION]
            yield pa.RecordBatch.from_arrays([*columns, value], names=[*LOCATION, "value"])


@dataclass(frozen=True)
class _VersionIds:
    """Each change's deterministic ``version_id``, by the function the processor uses."""

    entity_type: str
    label: str
    rule_version: int

    def __call__(self, batches):
        for batch in batches:
            ids = [str(version_id(self.entity_type, entity_id, self.label, self.rule_version, event_id))
                   for entity_id, event_id in zip(batch.column(batch.schema.get_field_index("entity_id")).to_pylist(),
                                                  batch.column(batch.schema.get_field_index("event_id")).to_pylist(),
                                                  strict=True)]
            yield pa.RecordBatch.from_arrays([pa.array(ids, pa.string()), *batch.columns],
                                             names=["version_id", *batch.schema.names])


def _versions(typed: DataFrame, rule: LabelRule) -> DataFrame:
    """One row per change of the value along each entity's states (``LABEL_VERSIONS_SCHEMA``)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    location = typed.select(*LOCATION).schema.simpleString()[len("struct<"):-1]
    texts = typed.mapInArrow(_AsText(), f"{location},value:string")
    previous = F.lag("value").over(Window.partitionBy("entity_id").orderBy("seq"))
    changes = texts.withColumn("previous_value", previous).where(~F.col("value").eqNullSafe(F.col("previous_value")))
    with_ids = changes.mapInArrow(_VersionIds(rule.entity_type, rule.name, rule.version),
                                  f"version_id:string,{changes.schema.simpleString()[len('struct<'):-1]}")
    return with_ids.orderBy("entity_id", "seq").select(
        "version_id", F.lit(rule.entity_type).alias("entity_type"), "entity_id",
        F.lit(rule.version).cast("int").alias("rule_version"), "value", "previous_value", "event_time", "recorded_at",
        "event_id", F.col("topic").alias("cause_topic"), F.col("partition").alias("cause_partition"),
        F.col("offset").alias("cause_offset"))
