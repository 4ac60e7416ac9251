"""`labelstore demo`: the whole flow on a real local broker, and demo data for your own experiments."""

from __future__ import annotations

import itertools
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from time import perf_counter

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from labelstore.cli._common import reported_errors
from labelstore.errors import LabelstoreError
from labelstore.settings import Settings

demo_app = typer.Typer(help="Demo data and an end-to-end demo on a local broker.", no_args_is_help=True)
console = Console()
CHUNK = 5_000

OrdersOption = typer.Option(2_000, "--orders", min=0, help="Order lifecycles to generate.")
ContentOption = typer.Option(500, "--content", min=0, help="Content lifecycles to generate.")
SeedOption = typer.Option(7, "--seed", help="Same seed, same events (ids included).")


@demo_app.command("run")
def run(orders: int = OrdersOption, content: int = ContentOption, seed: int = SeedOption) -> None:
    """Broker, topics and a processor worker; demo events; then labels changing as events arrive."""
    from labelstore.events.admin import ensure_topics
    from labelstore.events.reader import count_records
    from labelstore.cli.kafka import ensure_broker
    from labelstore.processors.launcher import start_worker_process

    with reported_errors():
        settings = Settings()
        console.print(f"Kafka: [bold]{ensure_broker(settings)}[/]")
        ensure_topics(settings)
        log_path = Path(".labelstore") / "demo-worker.log"
        worker = start_worker_process(settings, log_path, log_level="warning")
        console.print(f"processor worker started (pid {worker.pid}, log {log_path}), "
                      f"latest labels on http://{settings.processor.web_host}:{settings.processor.web_port}/labels/")
        try:
            held = sum(count_records(settings, settings.topics.events_topic(e)) for e in settings.topics.entity_topics)
            if held:
                console.print(f"the event topics already hold {held:,} events: not publishing the demo data again")
            else:
                _publish(settings, orders, content, seed)
            stories = _live_stories(settings, worker)
            _summary(settings)
            _offline(settings, stories)
        finally:
            worker.terminate()
            worker.wait(30)


@demo_app.command("publish")
def publish(orders: int = OrdersOption, content: int = ContentOption, seed: int = SeedOption) -> None:
    """Publish deterministic demo lifecycles to the configured cluster."""
    from labelstore.events.admin import ensure_topics

    with reported_errors():
        settings = Settings()
        ensure_topics(settings)
        _publish(settings, orders, content, seed)


def _publish(settings: Settings, orders: int, content: int, seed: int) -> None:
    from labelstore.events.demo import generate
    from labelstore.events.publisher import Publisher

    events = generate(orders, content, seed=seed)
    published = 0
    started = perf_counter()
    with Publisher(settings) as publisher, Progress(console=console, transient=True) as progress:
        task = progress.add_task("publishing demo events", total=None)
        while chunk := list(itertools.islice(events, CHUNK)):
            published += len(publisher.publish_many(chunk))
            progress.update(task, advance=len(chunk))
    elapsed = perf_counter() - started
    console.print(f"published {published:,} events ({orders:,} orders, {content:,} content items) "
                  f"in {elapsed:.1f} s, {published / max(elapsed, 1e-9):,.0f} events/s, every one acknowledged")


def _live_stories(settings: Settings, worker) -> list[str]:
    """Replay the two seed orders event by event and show their labels from the processor."""
    from labelstore.events.demo import seed_stories
    from labelstore.events.publisher import Publisher
    from labelstore.processors.client import LatestLabelsClient

    client = LatestLabelsClient(f"http://{settings.processor.web_host}:{settings.processor.web_port}")
    suffix = f"-live-{datetime.now(UTC):%H%M%S}"
    with Publisher(settings) as publisher:
        for entity_id, events in seed_stories(suffix).items():
            table = Table("event_time", "event", "what changed", "fraud label (live)", title=f"order {entity_id}")
            for event in events:
                report = publisher.publish(event).result(timeout=60)
                entity = _wait_until_folded(client, entity_id, report.offset, worker)
                fraud = entity["labels"].get("fraud", {}).get("value") or "(none yet)"
                changed = ", ".join(f"{k}={v}" for k, v in event.payload.model_dump(exclude_none=True).items()
                                    if k != "shipping_address") or "shipping address"
                table.add_row(f"{event.event_time:%Y-%m-%d %H:%M}", event.event_type, changed, f"[bold]{fraud}")
            console.print(table)
    return list(seed_stories(suffix))


def _offline(settings: Settings, stories: list[str]) -> None:
    """Archive everything, then ask the warehouse what the fraud label was, on both time axes."""
    from labelstore.warehouse import Warehouse
    from labelstore.materializers.materializer import Materializer
    from labelstore.offline.asof import as_of
    from labelstore.offline.explain import explain

    stats = Materializer(settings).run(until_caught_up=True)
    warehouse = Warehouse(settings.warehouse.path)
    console.print(f"materialized {stats.records:,} records into {warehouse.root} (Parquet + labelstore.duckdb)")
    entity_id = stories[0]
    timeline = explain(warehouse, "order", entity_id)
    table = Table("event", "event_time", "recorded_at", "fraud known_at=recorded_at", "fraud valid_at=event_time",
                  title=f"as-of queries on order {entity_id}")
    for event in timeline.events:
        known = as_of(warehouse, "fraud", entity_ids=[entity_id], known_at=event["recorded_at"]).to_pylist()[0]["value"]
        valid = as_of(warehouse, "fraud", entity_ids=[entity_id], valid_at=event["event_time"]).to_pylist()[0]["value"]
        table.add_row(event["event_type"], f"{event['event_time']:%Y-%m-%d %H:%M}",
                      f"{event['recorded_at']:%H:%M:%S.%f}"[:-3], str(known), str(valid))
    console.print(table)
    console.print("try: labelstore explain order " + entity_id + "   |   labelstore snapshot my-first --known-at <ISO time>")


def _wait_until_folded(client, entity_id: str, offset: int, worker, timeout: float = 120.0) -> dict:
    from labelstore.processors.client import ProcessorNotReadyError

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise LabelstoreError("the processor worker stopped: see .labelstore/demo-worker.log")
        try:
            entity = client.entity("order", entity_id)
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
