"""The label explorer's web application: read-only JSON endpoints under /api/ and a thin page.

Every endpoint answers JSON; an error is ``{"error": message}`` with a 4xx status (404: no such
entity, label or rule version; 400: a parameter that cannot be used, e.g. an unknown axis). Only
GET routes exist: the explorer changes nothing. Queries run in worker threads, so one slow
query (a rule diff folds the whole history once per warehouse commit) does not stall the page.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from labelstore.errors import LabelstoreError
from labelstore.settings import Settings
from labelstore.warehouse import Warehouse
from labelstore.ui.entities import entity_timeline, search_entities
from labelstore.ui.exceptions import ExplorerError
from labelstore.ui.monitoring import health, label_report
from labelstore.ui.rules import RuleVersions, StateHistories, check_axis, entity_histories, rule_diff

STATIC_DIR = Path(__file__).parent / "static"
VENDOR_DIR = STATIC_DIR / "vendor"  # third-party builds, kept gzip-compressed (a third of their size)
log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Explorer:
    """What the endpoints read: the warehouse, the rule versions, the cluster (for health)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.warehouse = Warehouse.of(settings)
        self.rules = RuleVersions(settings)
        self.histories = StateHistories(self.warehouse)

    def rule(self, request: web.Request, key: str) -> Any:
        name = request.match_info["label"]
        return self.rules.get(name, _int(request, key))


EXPLORER = web.AppKey("explorer", Explorer)


def create_app(settings: Settings) -> web.Application:
    app = web.Application(middlewares=[_json_errors])
    app[EXPLORER] = Explorer(settings)
    app.add_routes([
        web.get("/", _index),
        web.get("/api/meta", _meta),
        web.get("/api/entities/{entity_type}", _entities),
        web.get("/api/entities/{entity_type}/{entity_id}/timeline", _timeline),
        web.get("/api/rules", _rules),
        web.get("/api/labels/{label}/monitor", _monitor),
        web.get("/api/labels/{label}/diff", _diff),
        web.get("/api/labels/{label}/diff/{entity_id}", _diff_entity),
        web.get("/api/health", _health),
        web.get("/static/vendor/{name}", _vendored),  # before the folder's own route, which would not find them
        web.static("/static", STATIC_DIR),
    ])
    return app


@web.middleware
async def _json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ExplorerError as exc:
        return _json({"error": str(exc)}, status=exc.status)
    except LabelstoreError as exc:  # the offline layer's refusals (a query that cannot be answered as asked)
        return _json({"error": str(exc)}, status=400)
    except web.HTTPException as exc:
        if not request.path.startswith("/api/"):
            raise
        return _json({"error": f"{exc.reason}: {request.method} {request.path}"}, status=exc.status)
    except Exception as exc:
        log.exception("the explorer failed to answer %s", request.path)
        return _json({"error": f"internal error: {type(exc).__name__}: {exc}"}, status=500)


async def _index(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC_DIR / "index.html")


async def _vendored(request: web.Request) -> web.Response:
    """A vendored script: sent compressed as stored, or unpacked for a client that does not take gzip."""
    name = request.match_info["name"]
    path = VENDOR_DIR / f"{name}.gz"
    if not name.endswith(".js") or path.parent != VENDOR_DIR or not path.is_file():
        raise web.HTTPNotFound()
    packed = await asyncio.to_thread(path.read_bytes)
    cache = {"Cache-Control": "max-age=3600"}
    if "gzip" in request.headers.get("Accept-Encoding", ""):
        return web.Response(body=packed, content_type="text/javascript", headers={**cache, "Content-Encoding": "gzip"})
    return web.Response(body=gzip.decompress(packed), content_type="text/javascript", headers=cache)


async def _meta(request: web.Request) -> web.Response:
    explorer = request.app[EXPLORER]
    labels = await asyncio.to_thread(explorer.rules.labels)
    return _json({"project": explorer.settings.project, "entity_types": explorer.warehouse.repository.entity_types,
                  "labels": labels, "warehouse": str(explorer.warehouse.root)})


async def _entities(request: web.Request) -> web.Response:
    explorer = request.app[EXPLORER]
    return _json(await asyncio.to_thread(
        search_entities, explorer.warehouse, request.match_info["entity_type"], request.query.get("prefix", ""),
        limit=_int(request, "limit", 20)))


async def _timeline(request: web.Request) -> web.Response:
    explorer = request.app[EXPLORER]

    def answer() -> dict[str, Any]:
        return entity_timeline(explorer.warehouse, request.match_info["entity_type"], request.match_info["entity_id"],
                               explorer.rules.active())
    return _json(await asyncio.to_thread(answer))


async def _rules(request: web.Request) -> web.Response:
    return _json({"rules": await asyncio.to_thread(request.app[EXPLORER].rules.listing)})


async def _monitor(request: web.Request) -> web.Response:
    explorer = request.app[EXPLORER]

    def answer() -> dict[str, Any]:
        return label_report(explorer.warehouse, explorer.rules.labels(), request.match_info["label"],
                            axis=request.query.get("axis", "valid"), window=request.query.get("window", "day"))
    return _json(await asyncio.to_thread(answer))


async def _diff(request: web.Request) -> web.Response:
    explorer = request.app[EXPLORER]
    axis = check_axis(request.query.get("axis", "valid"))

    def answer() -> dict[str, Any]:
        rule_a, rule_b = explorer.rule(request, "a"), explorer.rule(request, "b")
        return rule_diff(explorer.warehouse, explorer.histories, rule_a, rule_b, axis=axis,
                         limit=_int(request, "limit", 100))
    return _json(await asyncio.to_thread(answer))


async def _diff_entity(request: web.Request) -> web.Response:
    explorer = request.app[EXPLORER]
    axis = check_axis(request.query.get("axis", "valid"))

    def answer() -> dict[str, Any]:
        rule_a, rule_b = explorer.rule(request, "a"), explorer.rule(request, "b")
        return entity_histories(explorer.warehouse, rule_a, rule_b, request.match_info["entity_id"], axis=axis)
    return _json(await asyncio.to_thread(answer))


async def _health(request: web.Request) -> web.Response:
    explorer = request.app[EXPLORER]
    return _json(await asyncio.to_thread(health, explorer.settings, explorer.warehouse))


def _int(request: web.Request, key: str, default: int | None = None) -> int:
    text = request.query.get(key)
    if text is None:
        if default is None:
            raise ExplorerError(f"query parameter {key!r} is missing (an integer)")
        return default
    try:
        return int(text)
    except ValueError:
        raise ExplorerError(f"query parameter {key}={text!r} is not an integer") from None


def _json(body: Any, *, status: int = 200) -> web.Response:
    data = orjson.dumps(body, default=_encode, option=orjson.OPT_NON_STR_KEYS)
    return web.Response(body=data, status=status, content_type="application/json")


def _encode(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, date | datetime):
        return value.isoformat()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def serve(settings: Settings, *, host: str = "127.0.0.1", port: int = 6070,
          ready: Callable[[str], None] | None = None) -> None:
    """Serve the explorer until interrupted; ``ready`` is called with its address once it listens."""
    address = f"http://{host}:{port}/"

    def listening(_banner: str) -> None:  # run_app announces the sites once they listen
        if ready:
            ready(address)

    web.run_app(create_app(settings), host=host, port=port, print=listening, access_log=None)
