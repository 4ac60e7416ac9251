"""The latest labels of an entity over HTTP, answered by the worker that owns the entity.

    GET /labels/<entity_type>/<entity_id>/  ->  {"entity_type", "entity_id", "labels": {name: {...}},
                                                 "state": {field: value}, "last_offset"}

Each label carries its value, rule version, since when (event_time and recorded_at) and the event
that caused it. A request reaching another worker is forwarded to the owner of the entity's
partition (Faust's table routing, on the same murmur2 partitioner as the producers).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import faust
from faust.exceptions import SameNode
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST

from labelstore.processors.core import decode_record
from labelstore.processors.diagnostics import consumer_state
from labelstore.processors.health import Watchdog, readiness


def register_label_pages(app: faust.App, tables: Mapping[str, Any]) -> None:
    for entity_type, table in tables.items():
        _register(app, entity_type, table)


def _register(app: faust.App, entity_type: str, table: Any) -> None:
    @app.page(f"/labels/{entity_type}/{{entity_id}}/", name=f"labels-{entity_type}")
    class LatestLabels(View):
        async def get(self, request: Request, entity_id: str) -> Response:
            try:
                return await app.router.route_req(table.name, entity_id, self.web, request)
            except SameNode:
                return self._answer(entity_id)
            except Exception:  # noqa: BLE001  (Faust raises assorted errors until partitions are assigned)
                return self.json({"error": "the processor is starting: partitions are not assigned yet, retry"},
                                 status=503)

        def _answer(self, entity_id: str) -> Response:
            record = decode_record(table.get(entity_id.encode()))
            if record is None:
                return self.json({"error": f"no events seen for {entity_type} {entity_id!r}"}, status=404)
            return self.json({"entity_type": entity_type, "entity_id": entity_id, "labels": record["labels"],
                              "state": record["state"], "last_offset": record["offset"]})


def register_health_pages(app: faust.App, watchdog: Watchdog) -> None:
    """``/healthz``: alive and progressing (503 once stalled). ``/readyz``: partitions assigned and
    their state recovered (503 before). ``/status``: both, and the consumer's state, for
    ``labelstore status`` and for people. ``/metrics``: for Prometheus (``processors.metrics``)."""

    @app.page("/healthz", name="healthz")
    class Health(View):
        async def get(self, request: Request) -> Response:
            healthy, report = watchdog.health()
            return self.json(report, status=200 if healthy else 503)

    @app.page("/readyz", name="readyz")
    class Ready(View):
        async def get(self, request: Request) -> Response:
            ready, report = readiness(app)
            return self.json(report, status=200 if ready else 503)

    metrics = getattr(app, "labelstore_metrics", None)
    if metrics is not None:
        metrics.lag = lambda: watchdog.assessment.lag

        @app.page("/metrics", name="metrics")
        class Metrics(View):
            async def get(self, request: Request) -> Response:
                # As a header: aiohttp refuses a content_type argument that names its charset.
                return self.bytes(metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    @app.page("/status", name="status")
    class Status(View):
        async def get(self, request: Request) -> Response:
            healthy, health = watchdog.health()
            ready, readiness_report = readiness(app)
            return self.json({"healthy": healthy, "ready": ready, "health": health, "readiness": readiness_report,
                              "processed": dict(app.labelstore_counters), "consumer": consumer_state(app)})
