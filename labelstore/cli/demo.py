"""`labelstore demo`: the whole flow on a real local broker, and demo data for your own experiments."""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import UTC, datetime
from time import perf_counter

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from labelstore.cli._common import reported_errors
from labelstore.settings import Settings

demo_app = typer.Typer(help="Demo data and an end-to-end demo on a local broker.", no_args_is_help=True)
console = Console()
CHUNK = 5_000

OrdersOption = typer.Option(2_000, "--orders", min=0, help="Order lifecycles to generate.")
ContentOption = typer.Option(500, "--content", min=0, help="Content lifecycles to generate.")
SeedOption = typer.Option(7, "--seed", help="Same seed, same events (ids included).")


@demo_app.command("run")
def run(orders: int = OrdersOption, content: int = ContentOption, seed: int = SeedOption) -> None:
    """Start a local broker if none is configured, publish demo events, and show what Kafka holds."""
    from labelstore.cli.kafka import ensure_broker

    with reported_errors():
        settings = Settings()
        console.print(f"Kafka: [bold]{ensure_broker(settings)}[/]")
        _publish(settings, orders, content, seed)
        _show_topic(settings)


@demo_app.command("publish")
def publish(orders: int = OrdersOption, content: int = ContentOption, seed: int = SeedOption) -> None:
    """Publish deterministic demo lifecycles to the configured cluster."""
    with reported_errors():
        _publish(Settings(), orders, content, seed)


def _publish(settings: Settings, orders: int, content: int, seed: int) -> None:
    from events.admin import ensure_topics
    from events.demo import generate
    from events.publisher import Publisher

    created = ensure_topics(settings)
    if created:
        console.print(f"created topics: {', '.join(created)}")
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


def _show_topic(settings: Settings) -> None:
    from events.demo import SEED_ADDRESS_CHANGE, SEED_FALSE_NEGATIVE
    from events.reader import read_events

    counts: Counter[tuple[str, str]] = Counter()
    seeds: dict[str, list] = {SEED_ADDRESS_CHANGE: [], SEED_FALSE_NEGATIVE: []}
    for entity_type in settings.topics.entity_topics:
        topic = settings.topics.events_topic(entity_type)
        for stored in read_events(settings, topic):
            counts[(topic, stored.event.event_type)] += 1
            if stored.event.entity_id in seeds:
                seeds[stored.event.entity_id].append(stored)
    table = Table("topic", "event type", "events", title="What the event topics hold")
    for (topic, event_type), count in sorted(counts.items()):
        table.add_row(topic, event_type, f"{count:,}")
    console.print(table)
    for entity_id, stored_events in seeds.items():
        _print_timeline(entity_id, stored_events)


def _print_timeline(entity_id: str, stored_events: list) -> None:
    table = Table("event_time", "recorded_at (broker)", "event", "payload", "partition/offset", title=f"order {entity_id}")
    for stored in stored_events:
        event = stored.event
        recorded = datetime.fromtimestamp(stored.recorded_at_ms / 1000, UTC)
        payload = ", ".join(f"{k}={v}" for k, v in event.payload.model_dump(exclude_none=True).items())
        table.add_row(f"{event.event_time:%Y-%m-%d %H:%M}", f"{recorded:%Y-%m-%d %H:%M:%S}", event.event_type,
                      payload, f"{stored.partition}/{stored.offset}")
    console.print(table)
