"""Consistency report: the label history recomputed from the events archive vs what the processor emitted.

The offline side re-folds the archived events in log order (what the processor did) and evaluates
the same rules; the online side is ``labels`` (labels.versions as archived, once per version_id).
Versions are matched by ``version_id``, which names entity, label, rule version and causing event.

The processor and the materializer run ahead of each other, so the comparison stops, per event
partition, at the last event whose label version is archived: every event up to it has been
processed and its versions archived (both follow the log in order).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import pyarrow as pa

from labelstore.rules.model import LabelRule
from labelstore.warehouse import Warehouse
from labelstore.offline.history import label_history, state_history


@dataclass(frozen=True)
class Divergence:
    entity_id: str
    kind: str  # missing | extra | different
    recorded_at: datetime
    online: str | None
    offline: str | None


@dataclass
class LabelReport:
    label: str
    matching: int = 0
    missing: int = 0  # recomputed offline, never emitted online
    extra: int = 0  # emitted online, not recomputed offline
    different: int = 0  # same version id, other value or previous value
    first_divergence: Divergence | None = None

    @property
    def consistent(self) -> bool:
        return self.missing == self.extra == self.different == 0


@dataclass
class CheckReport:
    labels: list[LabelReport] = field(default_factory=list)

    @property
    def consistent(self) -> bool:
        return all(report.consistent for report in self.labels)


def check(warehouse: Warehouse, rules: Sequence[LabelRule] | None = None) -> CheckReport:
    rules = warehouse.repository.initial_rules() if rules is None else list(rules)
    connection = warehouse.connect()
    report = CheckReport()
    try:
        for entity_type, declaration in warehouse.repository.declarations.items():
            entity_rules = [r for r in rules if r.entity_type == entity_type]
            if not entity_rules:
                continue
            states = state_history(connection, declaration, order="log", codec=warehouse.repository.codec)
            connection.register("offline_all", label_history(states, entity_type, entity_rules, declaration))
            connection.execute("""
                CREATE OR REPLACE TEMP TABLE reach AS
                SELECT cause_topic, cause_partition, max(cause_offset) AS last_offset
                FROM labels WHERE entity_type = ? GROUP BY ALL""", [entity_type])
            for rule in entity_rules:
                report.labels.append(_compare(connection, entity_type, rule.name))
            connection.unregister("offline_all")
    finally:
        connection.close()
    return report


def _compare(connection, entity_type: str, label: str) -> LabelReport:
    # A partition without any online version is compared whole: its offline versions are missing.
    within = """LEFT JOIN reach r ON r.cause_topic = x.cause_topic AND r.cause_partition = x.cause_partition
                WHERE (r.last_offset IS NULL OR x.cause_offset <= r.last_offset)"""
    rows = connection.sql(f"""
        WITH online AS (SELECT x.* FROM labels x {within} AND x.entity_type = $entity_type AND x.label = $label),
             offline AS (SELECT x.* FROM offline_all x {within} AND x.label = $label)
        SELECT CASE WHEN n.version_id IS NULL THEN 'missing' WHEN f.version_id IS NULL THEN 'extra'
                    WHEN n.value IS DISTINCT FROM f.value OR n.previous_value IS DISTINCT FROM f.previous_value
                    THEN 'different' ELSE 'matching' END AS kind,
               coalesce(n.entity_id, f.entity_id) AS entity_id, coalesce(n.recorded_at, f.recorded_at) AS recorded_at,
               coalesce(n.cause_offset, f.cause_offset) AS cause_offset, n.value AS online, f.value AS offline
        FROM online n FULL OUTER JOIN offline f ON n.version_id = f.version_id
        """, params={"entity_type": entity_type, "label": label}).to_arrow_table()
    report = LabelReport(label)
    counts = rows.group_by("kind").aggregate([("kind", "count")]).to_pylist()
    for row in counts:
        setattr(report, row["kind"], row["kind_count"])
    diverged = rows.filter(pa.compute.not_equal(rows["kind"], "matching"))
    if diverged.num_rows:
        first = diverged.sort_by([("recorded_at", "ascending"), ("cause_offset", "ascending")]).slice(0, 1).to_pylist()[0]
        report.first_divergence = Divergence(first["entity_id"], first["kind"], first["recorded_at"],
                                             first["online"], first["offline"])
    return report
