"""Label monitoring: what a label's values, coverage, flips and drift look like over time.

Computed with DuckDB from the warehouse's ``labels`` view (each emitted version once), per rule
version and per time window (``hour``, ``day`` or ``week``; weeks start on Monday, all in UTC), on
one time axis: ``known`` buckets versions by ``recorded_at`` (when the system knew), ``valid`` by
``event_time`` (of the causing event: business time). Both axes read the versions the processor
emitted, ordered per entity on the chosen axis (ties in log order); the valid axis does not re-fold.

Definitions (``window`` = [window_start, window_start + window)):
- distribution ``labels``: entities labelled in the window, each counted once at its last value in
  the window (a flow: what the label system produced then). ``standing``: entities holding that
  value at the window's end (a stock, all history before it included). Shares are within a window
  and rule version. ``rule_version`` is the version that produced the value.
- rates: ``positive_rate`` = positive share of ``labels`` (the label's positive value: ``true``
  for boolean rules, else ``positive_value`` of its monitoring settings; none: NULL);
  ``labelled`` = standing labels of that rule version; ``unlabelled`` = entities with an event by
  the window's end and no label then (the same on every rule version's row); ``coverage`` =
  labelled / entities seen; ``new_labels`` = versions giving a label to an entity without one;
  ``flips`` = versions changing an existing value to another.
- flips (per rule version): how long after the entity's first event (same axis) the flips in the
  range came, against the rule's ``maturity_days``: a flip after it means labels mature later than
  the rule claims.
- time_to_label (per rule version of the first label): entity's first event -> its first label.
- drift: see ``offline.drift``; by default ``current`` is the last complete window before the
  data's end and ``reference`` the ``reference_windows`` (1) windows before it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pyarrow as pa
from pydantic import ValidationError

from labelstore.errors import ConfigurationError
from labelstore.offline.asof import QueryError, instant
from labelstore.offline.drift import chi_square, psi
from labelstore.rules.model import LabelRule
from labelstore.settings import DriftThresholds, LabelMonitoring, MonitoringSettings
from labelstore.warehouse import UTC_MS, Warehouse

__all__ = ["DriftThresholds", "Drift", "LabelReport", "monitor_label", "WINDOWS", "AXES"]

WINDOWS = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(weeks=1)}
AXES = {"known": "recorded_at", "valid": "event_time"}
MAX_WINDOWS = 20_000
TIES = "recorded_at, cause_partition, cause_offset"
Range = tuple[datetime, datetime]

DISTRIBUTION_SCHEMA = pa.schema([("window_start", UTC_MS), ("rule_version", pa.int32()), ("value", pa.string()),
                                 ("labels", pa.int64()), ("share", pa.float64()), ("standing", pa.int64()),
                                 ("standing_share", pa.float64())])
RATES_SCHEMA = pa.schema([("window_start", UTC_MS), ("rule_version", pa.int32()), ("labels", pa.int64()),
                          ("positive_rate", pa.float64()), ("labelled", pa.int64()), ("unlabelled", pa.int64()),
                          ("coverage", pa.float64()), ("new_labels", pa.int64()), ("flips", pa.int64())])
FLIPS_SCHEMA = pa.schema([("rule_version", pa.int32()), ("count", pa.int64()), ("p50_days", pa.float64()),
                          ("p90_days", pa.float64()), ("p99_days", pa.float64()), ("max_days", pa.float64()),
                          ("maturity_days", pa.float64()), ("beyond_maturity", pa.int64()),
                          ("beyond_maturity_share", pa.float64())])
TIME_TO_LABEL_SCHEMA = pa.schema([("rule_version", pa.int32()), ("entities", pa.int64()),
                                  ("p50_seconds", pa.float64()), ("p90_seconds", pa.float64()),
                                  ("p99_seconds", pa.float64())])


@dataclass(frozen=True)
class Drift:
    """One statistic between two windows. For ``psi`` the value is compared with ``threshold``
    (crossed above it); for ``chi2`` the value is the statistic and ``threshold`` is the p-value
    limit (crossed when ``p_value`` is below it)."""

    label: str
    rule_version: int | None  # None: every rule version's labels together
    statistic: str  # "psi" | "chi2"
    reference: Range
    current: Range
    value: float
    threshold: float
    crossed: bool
    p_value: float | None
    reference_labels: int = 0
    current_labels: int = 0
    note: str = ""  # why it was not judged (too few labels)


@dataclass(frozen=True)
class LabelReport:
    label: str
    window: str
    axis: str
    distribution: pa.Table
    rates: pa.Table
    flips: pa.Table
    time_to_label: pa.Table
    drift: list[Drift]
    start: datetime | None = None  # the windows' range (None: no label versions)
    end: datetime | None = None
    positive_value: str | None = None
    thresholds: DriftThresholds = field(default_factory=DriftThresholds)

    @property
    def crossed(self) -> list[Drift]:
        return [d for d in self.drift if d.crossed]

    def drift_table(self) -> pa.Table:
        rows = [{**d.__dict__, "reference_start": d.reference[0], "reference_end": d.reference[1],
                 "current_start": d.current[0], "current_end": d.current[1]} for d in self.drift]
        for row in rows:
            del row["reference"], row["current"]
        return pa.Table.from_pylist(rows)

    def to_pandas(self) -> dict[str, Any]:
        """Each table as a pandas DataFrame: distribution, rates, flips, time_to_label, drift."""
        return {"distribution": self.distribution.to_pandas(), "rates": self.rates.to_pandas(),
                "flips": self.flips.to_pandas(), "time_to_label": self.time_to_label.to_pandas(),
                "drift": self.drift_table().to_pandas()}


def monitor_label(warehouse: Warehouse, label: str, *, window: str = "day", axis: str = "known",
                  start: datetime | None = None, end: datetime | None = None,
                  reference: Range | None = None, current: Range | None = None,
                  thresholds: DriftThresholds | None = None, positive_value: str | None = None) -> LabelReport:
    """A label's monitoring report over [start, end) (default: all its versions)."""
    rules = _rules_of(warehouse, label)
    if window not in WINDOWS:
        raise QueryError(f"window must be one of {', '.join(WINDOWS)}, not {window!r}")
    if axis not in AXES:
        raise QueryError(f"axis must be known or valid, not {axis!r}")
    config = _label_settings(warehouse, label)
    thresholds = thresholds or config
    positive = positive_value or getattr(thresholds, "positive_value", None) or config.positive_value
    if positive is None and rules[-1].value_type == "boolean":
        positive = "true"
    start, end = instant(start, "start"), instant(end, "end")
    reference, current = _range(reference, "reference"), _range(current, "current")
    if start is not None and end is not None and start >= end:
        raise QueryError(f"start {start:%Y-%m-%d %H:%M:%S} must be before end {end:%Y-%m-%d %H:%M:%S}")
    connection = warehouse.connect()
    bounds = _prepare(connection, rules[-1], AXES[axis], start, end)
    if bounds is None:
        return _empty(label, window, axis, positive, thresholds)
    first, last, data_end = _grid(connection, WINDOWS[window], start, end, bounds)
    flow_start = start or first
    distribution = _distribution(connection, window, first, flow_start)
    rates = _rates(connection, positive, flow_start)
    maturity = {rule.version: rule.maturity_days for rule in rules}
    flips = _flips(connection, flow_start, maturity, rules[-1].maturity_days)
    time_to_label = _time_to_label(connection, flow_start)
    if current is None:
        current = _last_complete(window, data_end)
    if reference is None:
        span = WINDOWS[window] * getattr(thresholds, "reference_windows", config.reference_windows)
        reference = (current[0] - span, current[0])
    drift = _drift(connection, label, reference, current, thresholds)
    return LabelReport(label, window, axis, distribution, rates, flips, time_to_label, drift,
                       first, last + WINDOWS[window], positive, thresholds)


def floor(moment: datetime, window: str) -> datetime:
    """The start of the window holding ``moment`` (UTC; weeks start on Monday, like DuckDB's)."""
    if window == "hour":
        return moment.replace(minute=0, second=0, microsecond=0)
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return day - timedelta(days=day.weekday()) if window == "week" else day


def _rules_of(warehouse: Warehouse, label: str) -> list[LabelRule]:
    rules = sorted((r for r in warehouse.repository.rules if r.name == label), key=lambda r: r.version)
    if not rules:
        known = sorted({r.name for r in warehouse.repository.rules})
        raise QueryError(f"unknown label {label!r}; known labels: {', '.join(known)}")
    return rules


def _label_settings(warehouse: Warehouse, label: str) -> LabelMonitoring:
    """The label's section of ``monitoring:`` in the repository's labelstore.yaml."""
    try:
        monitoring = MonitoringSettings.model_validate(warehouse.repository.config.get("monitoring") or {})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False))
        raise ConfigurationError(f"{warehouse.repository.root / 'labelstore.yaml'}: monitoring.{problems}") from exc
    return monitoring.for_label(label)


def _range(pair: Range | None, name: str) -> Range | None:
    if pair is None:
        return None
    low, high = instant(pair[0], f"{name} start"), instant(pair[1], f"{name} end")
    if low >= high:
        raise QueryError(f"{name} window: start {low:%Y-%m-%d %H:%M:%S} must be before end {high:%Y-%m-%d %H:%M:%S}")
    return low, high


def _prepare(connection, rule: LabelRule, time: str, start, end) -> tuple[datetime, datetime] | None:
    """Temp tables ``versions`` (the label's versions before ``end``, in order per entity, with the
    previous one's value) and ``first_seen``; returns the first and last version times, if any."""
    connection.execute(f"""
        CREATE TEMP TABLE versions AS
        SELECT entity_id, rule_version, value, t,
               lag(value) OVER w AS prev_value, lag(rule_version) OVER w AS prev_rule_version,
               row_number() OVER w AS nth
        FROM (SELECT *, {time} AS t FROM labels WHERE label = $label AND entity_type = $entity_type
              {'AND ' + time + ' < $end' if end is not None else ''})
        WINDOW w AS (PARTITION BY entity_id ORDER BY t, {TIES})""",
                       {"label": rule.name, "entity_type": rule.entity_type, **({"end": end} if end else {})})
    connection.execute(f"""
        CREATE TEMP TABLE first_seen AS
        SELECT entity_id, min({time}) AS first_t FROM events WHERE entity_type = $entity_type
        {'AND ' + time + ' < $end' if end is not None else ''} GROUP BY entity_id""",
                       {"entity_type": rule.entity_type, **({"end": end} if end else {})})
    low, high = connection.execute("SELECT min(t), max(t) FROM versions").fetchall()[0]
    return None if low is None else (low, high)


def _grid(connection, step: timedelta, start, end, bounds) -> tuple[datetime, datetime, datetime]:
    """Temp table ``windows`` (window_start, window_end) over the range; versions get their window."""
    window = next(name for name, size in WINDOWS.items() if size == step)
    first = floor(start or bounds[0], window)
    data_end = end or bounds[1] + timedelta(milliseconds=1)
    last = floor(data_end - timedelta(milliseconds=1), window)
    if (last - first) / step >= MAX_WINDOWS:
        raise QueryError(f"{(last - first) / step:,.0f} {window} windows from {first:%Y-%m-%d} to {data_end:%Y-%m-%d}: "
                         f"at most {MAX_WINDOWS:,}; choose a larger --window or a narrower --start/--end")
    parameters = {"first": first, "last": last, "step": step}
    connection.execute("""
        CREATE TEMP TABLE windows AS
        SELECT window_start, window_start + $step AS window_end
        FROM (SELECT unnest(generate_series($first::TIMESTAMPTZ, $last::TIMESTAMPTZ, $step::INTERVAL)) AS window_start)""",
                       parameters)
    # A version's window; versions before the first window count from it (standing labels).
    connection.execute("ALTER TABLE versions ADD COLUMN bucket TIMESTAMPTZ")
    connection.execute(f"UPDATE versions SET bucket = greatest(date_trunc('{window}', t), $first::TIMESTAMPTZ)",
                       {"first": first})
    return first, last, data_end


def _distribution(connection, window: str, first: datetime, flow_start: datetime) -> pa.Table:
    connection.execute("""
        CREATE TEMP TABLE flow AS
        SELECT bucket AS window_start, rule_version, value FROM versions WHERE t >= $start
        QUALIFY row_number() OVER (PARTITION BY bucket, entity_id ORDER BY nth DESC) = 1""", {"start": flow_start})
    connection.execute("""
        CREATE TEMP TABLE standing AS
        WITH deltas AS (
            SELECT bucket, rule_version, value, 1 AS d FROM versions WHERE value IS NOT NULL
            UNION ALL
            SELECT bucket, prev_rule_version, prev_value, -1 FROM versions WHERE prev_value IS NOT NULL),
        per AS (SELECT bucket, rule_version, value, sum(d) AS d FROM deltas GROUP BY ALL),
        keys AS (SELECT DISTINCT rule_version, value FROM per)
        SELECT w.window_start, k.rule_version, k.value,
               sum(coalesce(p.d, 0)) OVER (PARTITION BY k.rule_version, k.value ORDER BY w.window_start) AS standing
        FROM windows w CROSS JOIN keys k
        LEFT JOIN per p ON p.bucket = w.window_start AND p.rule_version = k.rule_version AND p.value = k.value""")
    table = connection.sql("""
        WITH labelled AS (SELECT window_start, rule_version, value, count(*) AS labels FROM flow
                          WHERE value IS NOT NULL GROUP BY ALL)
        SELECT window_start, rule_version, value, coalesce(l.labels, 0) AS labels,
               coalesce(l.labels, 0) / nullif(sum(coalesce(l.labels, 0)) OVER part, 0) AS share,
               coalesce(s.standing, 0) AS standing,
               coalesce(s.standing, 0) / nullif(sum(coalesce(s.standing, 0)) OVER part, 0) AS standing_share
        FROM labelled l FULL JOIN standing s USING (window_start, rule_version, value)
        WHERE coalesce(l.labels, 0) > 0 OR coalesce(s.standing, 0) > 0
        WINDOW part AS (PARTITION BY window_start, rule_version)
        ORDER BY window_start, rule_version, value""").to_arrow_table()
    return table.cast(DISTRIBUTION_SCHEMA)


def _rates(connection, positive: str | None, flow_start: datetime) -> pa.Table:
    table = connection.sql("""
        WITH produced AS (
            SELECT window_start, rule_version, count(*) AS labels, count(*) FILTER (value = $positive) AS positives
            FROM flow WHERE value IS NOT NULL GROUP BY ALL),
        changes AS (
            SELECT bucket AS window_start, rule_version,
                   count(*) FILTER (prev_value IS NULL AND value IS NOT NULL) AS new_labels,
                   count(*) FILTER (prev_value IS NOT NULL AND value IS NOT NULL AND value <> prev_value) AS flips
            FROM versions WHERE t >= $start GROUP BY ALL),
        held AS (SELECT window_start, rule_version, sum(standing) AS labelled FROM standing GROUP BY ALL),
        seen AS (SELECT w.window_start, count(f.entity_id) AS entities FROM windows w
                 LEFT JOIN first_seen f ON f.first_t < w.window_end GROUP BY ALL),
        rows AS (SELECT * FROM produced FULL JOIN changes USING (window_start, rule_version)
                 FULL JOIN held USING (window_start, rule_version))
        SELECT window_start, rule_version, coalesce(labels, 0) AS labels,
               CASE WHEN $positive IS NOT NULL THEN positives / nullif(labels, 0) END AS positive_rate,
               coalesce(labelled, 0) AS labelled,
               greatest(s.entities - sum(coalesce(labelled, 0)) OVER (PARTITION BY window_start), 0) AS unlabelled,
               coalesce(labelled, 0) / nullif(s.entities, 0) AS coverage,
               coalesce(new_labels, 0) AS new_labels, coalesce(flips, 0) AS flips
        FROM rows JOIN seen s USING (window_start)
        WHERE coalesce(labels, 0) + coalesce(labelled, 0) + coalesce(new_labels, 0) + coalesce(flips, 0) > 0
        ORDER BY window_start, rule_version""", params={"positive": positive, "start": flow_start}).to_arrow_table()
    return table.cast(RATES_SCHEMA)


def _flips(connection, flow_start: datetime, maturity: dict[int, float | None], fallback: float | None) -> pa.Table:
    rows = connection.sql("""
        SELECT v.rule_version, (epoch_ms(v.t) - epoch_ms(f.first_t)) / 86400000.0 AS days
        FROM versions v JOIN first_seen f USING (entity_id)
        WHERE v.t >= $start AND v.prev_value IS NOT NULL AND v.value IS NOT NULL AND v.value <> v.prev_value""",
                          params={"start": flow_start}).to_arrow_table()
    connection.register("flip_days", rows)
    versions = sorted(set(rows.column("rule_version").to_pylist()))
    # A rule version the repository has no file for (added to the catalog only) takes the
    # latest file's maturity: the closest declaration there is.
    connection.register("maturity", pa.table({
        "rule_version": pa.array(versions, pa.int32()),
        "maturity_days": pa.array([maturity.get(v, fallback) for v in versions], pa.float64())}))
    table = connection.sql("""
        SELECT rule_version, count(*) AS count, quantile_cont(days, 0.5) AS p50_days,
               quantile_cont(days, 0.9) AS p90_days, quantile_cont(days, 0.99) AS p99_days, max(days) AS max_days,
               any_value(maturity_days) AS maturity_days,
               count(*) FILTER (days > maturity_days) AS beyond_maturity,
               count(*) FILTER (days > maturity_days) / count(*) AS beyond_maturity_share
        FROM flip_days JOIN maturity USING (rule_version) GROUP BY rule_version ORDER BY rule_version""").to_arrow_table()
    return table.cast(FLIPS_SCHEMA)


def _time_to_label(connection, flow_start: datetime) -> pa.Table:
    table = connection.sql("""
        WITH firsts AS (
            SELECT entity_id, rule_version, t FROM versions WHERE value IS NOT NULL
            QUALIFY row_number() OVER (PARTITION BY entity_id ORDER BY nth) = 1),
        waits AS (SELECT rule_version, (epoch_ms(l.t) - epoch_ms(f.first_t)) / 1000.0 AS seconds
                  FROM firsts l JOIN first_seen f USING (entity_id) WHERE l.t >= $start)
        SELECT rule_version, count(*) AS entities, quantile_cont(seconds, 0.5) AS p50_seconds,
               quantile_cont(seconds, 0.9) AS p90_seconds, quantile_cont(seconds, 0.99) AS p99_seconds
        FROM waits GROUP BY rule_version ORDER BY rule_version""", params={"start": flow_start}).to_arrow_table()
    return table.cast(TIME_TO_LABEL_SCHEMA)


def _last_complete(window: str, data_end: datetime) -> Range:
    """The last window that ends at or before the data's end."""
    end = floor(data_end, window)
    return end - WINDOWS[window], end


def window_counts(connection, span: Range) -> dict[int | None, dict[str, int]]:
    """Labels produced in [span): each entity at its last value there; per rule version and (None) all."""
    rows = connection.sql("""
        SELECT rule_version, value FROM versions WHERE t >= $low AND t < $high
        QUALIFY row_number() OVER (PARTITION BY entity_id ORDER BY nth DESC) = 1""",
                          params={"low": span[0], "high": span[1]}).fetchall()
    counts: dict[int | None, dict[str, int]] = {None: {}}
    for rule_version, value in rows:
        if value is None:
            continue
        for key in (None, rule_version):
            bucket = counts.setdefault(key, {})
            bucket[value] = bucket.get(value, 0) + 1
    return counts


def _drift(connection, label: str, reference: Range, current: Range, thresholds: DriftThresholds) -> list[Drift]:
    """PSI and chi-square for all versions together, and per rule version found in both windows."""
    before, after = window_counts(connection, reference), window_counts(connection, current)
    results = []
    for rule_version in [None, *sorted(k for k in before.keys() & after.keys() if k is not None)]:
        ref, cur = before.get(rule_version, {}), after.get(rule_version, {})
        sizes = {"reference_labels": sum(ref.values()), "current_labels": sum(cur.values())}
        short = min(sizes.values()) < thresholds.min_labels
        note = f"fewer than {thresholds.min_labels} labels in a window: not judged" if short else ""
        common = {"label": label, "rule_version": rule_version, "reference": reference, "current": current,
                  "note": note, **sizes}
        stability = psi(ref, cur)
        results.append(Drift(statistic="psi", value=stability, threshold=thresholds.psi, p_value=None,
                             crossed=not short and stability > thresholds.psi, **common))
        test = chi_square(ref, cur)
        results.append(Drift(statistic="chi2", value=test.statistic, threshold=thresholds.p_value,
                             p_value=test.p_value, crossed=not short and test.p_value < thresholds.p_value, **common))
    return results


def _empty(label: str, window: str, axis: str, positive: str | None, thresholds: DriftThresholds) -> LabelReport:
    return LabelReport(label, window, axis, DISTRIBUTION_SCHEMA.empty_table(), RATES_SCHEMA.empty_table(),
                       FLIPS_SCHEMA.empty_table(), TIME_TO_LABEL_SCHEMA.empty_table(), [], positive_value=positive,
                       thresholds=thresholds)
