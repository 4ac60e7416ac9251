"""`labelstore status`: lag per partition, each worker's assignment and its last progress."""

from __future__ import annotations

import json
import time

import typer
from rich.console import Console
from rich.table import Table

from labelstore.cli._common import reported_errors
from labelstore.settings import Settings

console = Console()


def status(
    as_json: bool = typer.Option(False, "--json", help="Print the status as JSON."),
    partitions: bool = typer.Option(False, "--partitions", help="List every partition, not only those behind."),
) -> None:
    """How far the processor and the materializer are behind, who owns which partition, when each last moved."""
    from labelstore.status import materializer_status, processor_status

    with reported_errors():
        settings = Settings()
        reports = [processor_status(settings), materializer_status(settings)]
    if as_json:
        print(json.dumps([report.to_dict() for report in reports], indent=1))
        return
    for report in reports:
        _print(report, every_partition=partitions)


def _print(report, *, every_partition: bool) -> None:
    state = f", group {report.state}" if report.state else ""
    moved = f", last progress {_ago(report.last_progress_at)}" if report.last_progress_at else ""
    console.print(f"[bold]{report.name}[/]: lag {report.lag:,}{state}{moved}", highlight=False)
    rows = [p for p in report.partitions if every_partition or p.lag]
    if rows:
        table = Table("partition", "end", "position", "lag", *(["owner"] if report.name == "processor" else []))
        for p in rows:
            table.add_row(f"{p.topic}/{p.partition}", f"{p.end:,}", "-" if p.position is None else f"{p.position:,}",
                          f"{p.lag:,}", *([p.owner or "-"] if report.name == "processor" else []))
        console.print(table)
    if report.members:
        table = Table("worker", "host", "partitions", "ready", "healthy", "last progress", "events processed")
        for member in report.members:
            answer = member.status or {}
            health = answer.get("health", {})
            processed = sum(v for k, v in answer.get("processed", {}).items() if k.endswith(".events"))
            table.add_row(member.client_id, member.host, str(len(member.partitions)),
                          _yes(answer.get("ready")), _yes(answer.get("healthy")),
                          _ago(health.get("last_progress_at")) if health else (member.error or "-"),
                          f"{processed:,}" if answer else "-")
        console.print(table)
    elif report.name == "processor":
        console.print("no worker in the processor's group", style="yellow")


def _yes(value) -> str:
    return "-" if value is None else ("yes" if value else "[red]no[/]")


def _ago(epoch_s: float | None) -> str:
    if epoch_s is None:
        return "never"
    return f"{max(0.0, time.time() - epoch_s):.0f} s ago"
