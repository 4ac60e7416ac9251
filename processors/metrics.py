"""The worker's Prometheus metrics, served on its own web port at ``/metrics``.

Updated once per micro-batch, never per event: a batch's events, versions and dead letters are
counted in plain dicts first, then added to the library's counters key by key. Label values
are bounded: a topic and partition, an entity type, a label, a rule version, an error kind, and
a label's value only for labels whose values are few (booleans and short strings, at most
``MAX_VALUES_PER_LABEL`` of them per label; beyond that and for numbers the value reads
``VALUE_NOT_RECORDED``). Never an entity id. What is cheaper to read than to count (consumer
lag, the rules in force, the state store's size) is read when Prometheus scrapes.
"""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from prometheus_client import (CollectorRegistry, Counter, GCCollector, Histogram, PlatformCollector,
                               ProcessCollector, generate_latest)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from labelstore.processors.core import BatchResult, RawMessage

MAX_VALUES_PER_LABEL = 20
MAX_VALUE_CHARS = 40
VALUE_NOT_RECORDED = "(not recorded)"
BATCH_EVENTS_BUCKETS = (1, 5, 10, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000)
BATCH_SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class WorkerMetrics:
    """One registry per worker (not the library's global one: tests build several apps per process)."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        for collector in (ProcessCollector, PlatformCollector, GCCollector):
            collector(registry=registry)
        self.events = Counter("labelstore_events_consumed_total", "Events taken from an event topic and processed.",
                              ["topic", "partition"], registry=registry)
        self.batch_events = Histogram("labelstore_batch_events", "Events per micro-batch.", ["entity_type"],
                                      buckets=BATCH_EVENTS_BUCKETS, registry=registry)
        self.batch_seconds = Histogram(
            "labelstore_batch_duration_seconds", "Time to process a micro-batch: evaluate, send outputs, store state.",
            ["entity_type"], buckets=BATCH_SECONDS_BUCKETS, registry=registry)
        self.label_latency = Histogram(
            "labelstore_label_latency_seconds",
            "From an event's log-append time to the acknowledgement of the label version it caused.",
            ["entity_type"], buckets=LATENCY_BUCKETS, registry=registry)
        self.versions = Counter("labelstore_label_versions_total", "Label versions emitted.",
                                ["label", "value", "rule_version"], registry=registry)
        self.dead_letters = Counter("labelstore_dead_letters_total", "Events sent to the dead-letter topic, by kind.",
                                    ["entity_type", "error_type"], registry=registry)
        self.replays_skipped = Counter(
            "labelstore_replays_skipped_total", "Events seen again after a restart and skipped (already folded).",
            ["entity_type"], registry=registry)
        self._values: dict[str, set[str]] = {}
        # Consumer lag comes from the worker's watchdog, which checks it every few seconds.
        self.lag: Callable[[], Mapping[str, int]] = dict

    def batch_done(self, entity_type: str, batch: Sequence[RawMessage], result: BatchResult,
                   started: float, acknowledged: float) -> None:
        """A batch whose outputs were acknowledged at ``acknowledged`` (``time.time()``)."""
        self.batch_events.labels(entity_type).observe(len(batch))
        self.batch_seconds.labels(entity_type).observe(time.perf_counter() - started)
        for (topic, partition), count in Tally((m.topic, m.partition) for m in batch).items():
            self.events.labels(topic, str(partition)).inc(count)
        if result.versions:
            observe = self.label_latency.labels(entity_type).observe
            acknowledged_ms = acknowledged * 1000
            versions: Tally[tuple[str, str, int]] = Tally()
            for version in result.versions:
                observe(max(acknowledged_ms - version.recorded_at, 0) / 1000)
                versions[version.label, self._value_label(version.label, version.value), version.rule_version] += 1
            for (label, value, rule_version), count in versions.items():
                self.versions.labels(label, value, str(rule_version)).inc(count)
        if result.dead_letters:
            for error_type, count in Tally(dead.error_type for dead in result.dead_letters).items():
                self.dead_letters.labels(entity_type, error_type).inc(count)
        if result.skipped_replays:
            self.replays_skipped.labels(entity_type).inc(result.skipped_replays)

    def _value_label(self, label: str, value: Any) -> str:
        if value is None:
            return "null"  # the rule abstains now, after a value
        if isinstance(value, bool):
            return "true" if value else "false"
        if not isinstance(value, str) or len(value) > MAX_VALUE_CHARS:
            return VALUE_NOT_RECORDED
        seen = self._values.setdefault(label, set())
        if value in seen:
            return value
        if len(seen) >= MAX_VALUES_PER_LABEL:
            return VALUE_NOT_RECORDED
        seen.add(value)
        return value

    def watch(self, collector: Collector) -> None:
        self.registry.register(collector)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class ScrapedGauges(Collector):
    """Gauges read at scrape time from the worker's own state."""

    def __init__(self, lag: Callable[[], Mapping[str, int]], rules_in_force: Callable[[], Iterable[tuple[str, str, int]]],
                 activations: Callable[[], int], store_sizes: Callable[[], Mapping[str, int]]) -> None:
        self._lag, self._rules, self._activations, self._store_sizes = lag, rules_in_force, activations, store_sizes

    def collect(self) -> Iterable[GaugeMetricFamily]:
        lag = GaugeMetricFamily("labelstore_consumer_lag_events",
                                "Events logged but not yet processed, per owned partition (checked every few seconds).",
                                labels=["topic", "partition"])
        for where, events in sorted(self._lag().items()):
            topic, _, partition = where.rpartition("/")
            lag.add_metric([topic, partition], events)
        rules = GaugeMetricFamily("labelstore_rule_version_in_force",
                                  "The rule version each label is evaluated with now (0: switched off).",
                                  labels=["entity_type", "label"])
        for entity_type, label, version in self._rules():
            rules.add_metric([entity_type, label], version)
        activations = GaugeMetricFamily("labelstore_rule_activations",
                                        "Rule activations read from the rules topic since the worker started.")
        activations.add_metric([], self._activations())
        stores = GaugeMetricFamily("labelstore_state_store_entities",
                                   "Entities in this worker's state store (an estimate for RocksDB).",
                                   labels=["entity_type"])
        for entity_type, size in sorted(self._store_sizes().items()):
            stores.add_metric([entity_type], size)
        yield from (lag, rules, activations, stores)


def store_size(store: Any) -> int:
    """Entities in a table's store without reading them all: RocksDB's own estimate per partition."""
    databases = getattr(store, "_dbs", None)
    if databases is None:
        return len(store.data)
    return sum(int(db.property_int_value("rocksdb.estimate-num-keys") or 0) for db in list(databases.values()))
