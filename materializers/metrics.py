"""The materializer's Prometheus metrics, updated at each commit and served by `labelstore materialize`.

Counted per commit, not per record. How far the archive is behind each partition is read from
the consumer's cached high watermarks at each commit (the materializer commits at least every
``flush_interval_s`` while it runs).
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from prometheus_client import (CollectorRegistry, Counter, Gauge, Histogram, PlatformCollector, ProcessCollector,
                               start_http_server)

from labelstore.errors import LabelstoreError

COMMIT_SECONDS_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class MaterializerMetrics:
    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        for collector in (ProcessCollector, PlatformCollector):
            collector(registry=registry)
        self.records = Counter("labelstore_materializer_records_archived_total",
                               "Records made visible in the warehouse, per dataset.", ["dataset"], registry=registry)
        self.skipped = Counter("labelstore_materializer_records_skipped_total",
                               "Records left out of the archive: undecodable (the processor dead-letters them).",
                               registry=registry)
        self.commits = Counter("labelstore_materializer_commits_total", "Warehouse commits.", registry=registry)
        self.commit_seconds = Histogram("labelstore_materializer_commit_duration_seconds",
                                        "Time to write a commit's files and its commit record.",
                                        buckets=COMMIT_SECONDS_BUCKETS, registry=registry)
        self.last_commit = Gauge("labelstore_materializer_last_commit_timestamp_seconds",
                                 "When the last commit was made.", registry=registry)
        self.complete_through = Gauge(
            "labelstore_materializer_complete_through_timestamp_seconds",
            "Everything the brokers logged before this time is archived (set when the archive reached the end).",
            registry=registry)
        self.lag = Gauge("labelstore_materializer_lag_records", "Records logged but not archived yet, per partition.",
                         ["topic", "partition"], registry=registry)

    def committed(self, rows: Mapping[str, int], seconds: float, complete_through_ms: int | None) -> None:
        for dataset, count in rows.items():
            self.records.labels(dataset).inc(count)
        self.commits.inc()
        self.commit_seconds.observe(seconds)
        self.last_commit.set(time.time())
        if complete_through_ms is not None:
            self.complete_through.set(complete_through_ms / 1000)

    def behind(self, lag: Mapping[tuple[str, int], int]) -> None:
        for (topic, partition), records in lag.items():
            self.lag.labels(topic, str(partition)).set(records)

    def serve(self, host: str, port: int) -> None:
        """On a daemon thread of its own, for as long as the process runs."""
        try:
            start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            raise LabelstoreError(f"cannot serve the materializer's metrics on {host}:{port} ({exc.strerror}): set "
                                  f"LABELSTORE_WAREHOUSE__METRICS_PORT to a free port, or to 0 for none") from exc
