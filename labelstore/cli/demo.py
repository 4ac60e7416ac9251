"""`labelstore demo`: the whole flow on a real local broker, with the demo data of the repository's
``demo.py`` (the fraud example has one: `labelstore init DIR --example fraud`)."""

from __future__ import annotations

import itertools
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from time import perf_counter
from types import ModuleType

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from labelstore.cli._common import reported_errors
from labelstore.errors import LabelstoreError
from labelstore.repository import load_demo
from labelstore.settings import Settings

demo_app = typer.Typer(help="Demo data and an end-to-end demo on a local broker.", no_args_is_help=True)
console = Console()
CHUNK = 5_000

SizeOption = typer.Option(2_500, "--size", min=0, help="Entity lifecycles to generate.")
SeedOption = typer.Option(7, "--seed", help="Same seed, same events (ids included).")


@demo_app.command("run")
def run(size: int = SizeOption, seed: int = SeedOption) -> None:
    """Broker, `apply`, a processor worker; demo events; then labels changing as events arrive."""
    from labelstore.events.reader import count_records
    from labelstore.cli.kafka import ensure_broker
    from labelstore.plan import apply_plan, make_plan
    from labelstore.processors.launcher import start_worker_process

    with reported_errors():
        settings = Settings()
        demo = load_demo(settings.repository)
        console.print(f"label repository: [bold]{settings.repository.root}[/]")
        console.print(f"Kafka: [bold]{ensure_broker(settings)}[/]")
        done = apply_plan(make_plan(settings.repository, settings), settings)
        console.print(f"applied the repository: {len(done)} change(s) (topics, schema releases, rule versions)")
        log_path = settings.repository.root / ".labelstore" / "demo-worker.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        worker = start_worker_process(settings, log_path, log_level="warning")
        console.print(f"processor worker started (pid {worker.pid}, log {log_path}), "
                      f"latest labels on http://{settings.processor.web_host}:{settings.processor.web_port}/labels/")
        try:
            held = sum(count_records(settings, settings.topics.events_topic(e)) for e in settings.repository.entity_types)
            if held:
                console.print(f"the event topics already hold {held:,} events: not publishing the demo data again")
            else:
                _publish(settings, demo, size, seed)
            stories = _live_stories(settings, demo, worker, log_path)
            _summary(settings)
            _offline(settings, demo, stories)
        finally:
            worker.terminate()
            worker.wait(30)


@demo_app.command("publish")
def publish(size: int = SizeOption, seed: int = SeedOption) -> None:
    """Publish the repository's deterministic demo lifecycles to the configured cluster."""
    from labelstore.events.admin import ensure_topics

    with reported_errors():
        settings = Settings()
        ensure_topics(settings)
        _publish(settings, load_demo(settings.repository), size, seed)


def _publish(settings: Settings, demo: ModuleType, size: int, seed: int) -> None:
    from labelstore.events.publisher import Publisher

    events = demo.demo_events(size, seed=seed)
    published = 0
    started = perf_counter()
    with Publisher(settings) as publisher, Progress(console=console, transient=True) as progress:
        task = progress.add_task("publishing demo events", total=None)
        while chunk := list(itertools.islice(events, CHUNK)):
            published += len(publisher.publish_many(chunk))
            progress.update(task, advance=len(chunk))
    elapsed = perf_counter() - started
    console.print(f"published {published:,} events ({size:,} lifecycles) "
                  f"in {elapsed:.1f} s, {published / max(elapsed, 1e-9):,.0f} events/s, every one acknowledged")


def _live_stories(settings: Settings, demo: ModuleType, worker, log_path: Path) -> list[tuple[str, str]]:
    """Replay the demo's stories event by event and show the label the processor serves after each."""
    from labelstore.events.publisher import Publisher
    from labelstore.processors.client import LatestLabelsClient

    client = LatestLabelsClient(f"http://{settings.processor.web_host}:{settings.processor.web_port}")
    label = demo.DEMO_LABEL
    suffix = f"-live-{datetime.now(UTC):%H%M%S}"
    stories = demo.demo_stories(suffix)
    with Publisher(settings) as publisher:
        for entity_id, events in stories.items():
            entity_type = events[0].entity_type
            table = Table("event_time", "event", "payload", f"{label} label (live)", title=f"{entity_type} {entity_id}")
            for event in events:
                report = publisher.publish(event).result(timeout=60)
                entity = _wait_until_folded(client, entity_type, entity_id, report.offset, worker, log_path)
                value = entity["labels"].get(label, {}).get("value") or "(none yet)"
                payload = ", ".join(f"{k}={v}" for k, v in event.payload.model_dump(exclude_none=True).items()
                                    if not isinstance(v, dict))
                table.add_row(f"{event.event_time:%Y-%m-%d %H:%M}", event.event_type, payload, f"[bold]{value}")
            console.print(table)
    return [(events[0].entity_type, entity_id) for entity_id, events in stories.items()]


def _offline(settings: Settings, demo: ModuleType, stories: list[tuple[str, str]]) -> None:
    """Archive everything, then ask the warehouse what the label was, on both time axes."""
    from labelstore.warehouse import Warehouse
    from labelstore.materializers.materializer import Materializer
    from labelstore.offline.asof import as_of
    from labelstore.offline.explain import explain

    stats = Materializer(settings).run(until_caught_up=True)
    warehouse = Warehouse.of(settings)
    console.print(f"materialized {stats.records:,} records into {warehouse.root} (Iceberg tables + labelstore.duckdb)")
    label = demo.DEMO_LABEL
    entity_type, entity_id = stories[0]
    timeline = explain(warehouse, entity_type, entity_id)
    table = Table("event", "event_time", "recorded_at", f"{label} known_at=recorded_at", f"{label} valid_at=event_time",
                  title=f"as-of queries on {entity_type} {entity_id}")
    for event in timeline.events:
        known = as_of(warehouse, label, entity_ids=[entity_id], known_at=event["recorded_at"]).to_pylist()[0]["value"]
        valid = as_of(warehouse, label, entity_ids=[entity_id], valid_at=event["event_time"]).to_pylist()[0]["value"]
        table.add_row(event["event_type"], f"{event['event_time']:%Y-%m-%d %H:%M}",
                      f"{event['recorded_at']:%H:%M:%S.%f}"[:-3], str(known), str(valid))
    console.print(table)
    console.print(f"try: labelstore explain {entity_type} {entity_id}   |   labelstore snapshot my-first --known-at <ISO time>")


def _wait_until_folded(client, entity_type: str, entity_id: str, offset: int, worker, log_path: Path,
                       timeout: float = 120.0) -> dict:
    from labelstore.processors.client import ProcessorNotReadyError

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise LabelstoreError(f"the processor worker stopped: see {log_path}")
        try:
            entity = client.entity(entity_type, entity_id)
        except (OSError, ProcessorNotReadyError):
            entity = None  # the worker is still starting
        if entity is not None and entity["last_offset"] >= offset:
            return entity
        time.sleep(0.2)
    raise LabelstoreError(f"the processor did not fold {entity_id} within {timeout:.0f} s")


def _summary(settings: Settings) -> None:
    from labelstore.events.reader import count_records, read_raw
    from labelstore.labels import LabelVersion

    counts: Counter[tuple[str, object]] = Counter()
    for _, value, *_ in read_raw(settings, settings.topics.label_versions_topic):
        version = LabelVersion.from_json(value)
        counts[(version.label, version.value)] += 1
    table = Table("label", "value", "versions", title="Label versions emitted so far")
    for (label, value), count in sorted(counts.items(), key=str):
        table.add_row(label, str(value), f"{count:,}")
    console.print(table)
    console.print(f"dead letters: {count_records(settings, settings.topics.dead_letter_topic)}")
