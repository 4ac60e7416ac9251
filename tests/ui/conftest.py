"""A warehouse built from the fraud example's demo data through the real pipeline, and the explorer over it.

Demo orders and content, plus hand-made orders: two whose false-positive tag makes fraud v2 differ
from v1 (days apart in business time), and one whose false-negative tag arrives late (so its label
history as known differs from its history as valid). A worker processes everything, the
materializer archives it; the worker then stops and a few more events are published, so the
health page has a known lag to show. The catalog holds the repository's rules and fraud v2.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import uuid4

import pytest
from aiohttp import web

from labelstore.catalog.store import RuleCatalog
from labelstore.events.admin import ensure_topics
from labelstore.events.publisher import Publisher
from labelstore.rules.files import read_rule_file
from labelstore.rules.model import LabelRule
from labelstore.settings import RulesSettings, Settings, WarehouseSettings
from labelstore.warehouse import Warehouse
from labelstore.ui.app import create_app
from tests.conftest import settings_for
from tests.fraud_example import generate
from tests.offline.conftest import materialize
from tests.processors.test_core import classified, created, tagged
from tests.processors.worker_process import WorkerProcess, with_processor

V2 = Path(__file__).parents[2] / "examples" / "fraud" / "fraud.v2.sql"
T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)
STORY = f"ui-{uuid4().hex[:6]}"  # the prefix of every hand-made order
WAVE = 60  # orders a day in the fraud wave, more than monitoring's default 50 labels a window


@dataclass(frozen=True)
class World:
    settings: Settings
    warehouse: Warehouse
    v1: LabelRule
    v2: LabelRule
    false_positives: tuple[str, ...]
    late: str
    behind: int  # events published after the worker stopped: the processor's lag


def hand_made_orders() -> tuple[list, tuple[str, ...], str]:
    false_positives = (f"{STORY}-fp-1", f"{STORY}-fp-2")
    events = []
    for days, order in enumerate(false_positives):
        start = T0 + timedelta(days=3 * days)
        events += [created(order, start), classified(order, start + timedelta(minutes=1), "FRAUD"),
                   tagged(order, start + timedelta(hours=1), "false-positive")]
    late = f"{STORY}-late"
    # The false-negative tag happened before the verdict but is published after it.
    late_tag = tagged(late, T0 + timedelta(minutes=30), "false-negative")
    events += [created(late, T0), classified(late, T0 + timedelta(hours=1), "NOT_FRAUD")]
    for day, verdict in ((1, "NOT_FRAUD"), (2, "FRAUD")):  # the day before T0 + 3 days: the last complete one
        for n in range(WAVE):
            order, start = f"{STORY}-wave-{day}-{n:03d}", T0 + timedelta(days=day, minutes=10 * n)
            events += [created(order, start), classified(order, start + timedelta(minutes=1), verdict)]
    return [*events, late_tag], false_positives, late


def wait_processed(settings: Settings, worker: WorkerProcess, timeout: float = 90) -> None:
    from tests.offline.conftest import processed_everything

    deadline = time.monotonic() + timeout
    while not processed_everything(settings):
        worker.assert_alive()
        assert time.monotonic() < deadline, "the worker did not process every event in time"
        time.sleep(0.5)


@pytest.fixture(scope="module")
def world(kafka_cluster, tmp_path_factory) -> World:
    directory = tmp_path_factory.mktemp("explorer")
    settings = with_processor(settings_for(kafka_cluster.bootstrap_servers), directory / "data")
    catalog_url = f"sqlite:///{directory / 'catalog.sqlite'}"
    settings = settings.model_copy(update={"rules": RulesSettings(catalog_url=catalog_url),
                                           "warehouse": WarehouseSettings(path=directory / "warehouse")})
    ensure_topics(settings)
    catalog = RuleCatalog(catalog_url)
    for rule in settings.repository.rules:
        catalog.add(rule, "apply")
    v2, _ = catalog.add(read_rule_file(V2), "ana")
    stories, false_positives, late = hand_made_orders()
    worker = WorkerProcess(settings, directory / "worker.log").start()
    try:
        with Publisher(settings) as publisher:
            publisher.publish_many(list(generate(120, 30, seed=21)))
            publisher.publish_many(stories[:-1])
            publisher.flush()
            time.sleep(0.05)  # the late tag gets a later log-append time than the verdict
            publisher.publish_many(stories[-1:])
        wait_processed(settings, worker)
        warehouse = materialize(settings, directory / "warehouse")
    finally:
        worker.stop()
    behind = [created(f"{STORY}-after-{n}", T0 + timedelta(days=10)) for n in range(3)]
    with Publisher(settings) as publisher:
        publisher.publish_many(behind)
    v1 = catalog.get("fraud", 1).rule
    return World(settings, warehouse, v1, v2.rule, false_positives, late, len(behind))


class ExplorerServer:
    """The explorer's app on a free loopback port, served from a thread with its own event loop."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._started = threading.Event()
        self.url = ""

    def start(self) -> ExplorerServer:
        threading.Thread(target=self._loop.run_forever, name="explorer", daemon=True).start()
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(timeout=30)
        return self

    async def _serve(self) -> None:
        self._runner = web.AppRunner(create_app(self._settings), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)


@pytest.fixture(scope="module")
def explorer(world) -> ExplorerServer:
    server = ExplorerServer(world.settings).start()
    yield server
    server.stop()
