"""`labelstore warehouse`: look after the warehouse's Iceberg tables."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import typer
from rich.console import Console

from labelstore.cli._common import reported_errors
from labelstore.settings import Settings

warehouse_app = typer.Typer(help="Look after the warehouse's Iceberg tables.", no_args_is_help=True)
console = Console()


@warehouse_app.command("migrate")
def migrate() -> None:
    """Move an archive of the former layout (Parquet folders and _commits/) into Iceberg tables, once."""
    from labelstore.materializers.migrate import FORMER, migrate as run
    from labelstore.warehouse import Warehouse

    with reported_errors():
        settings = Settings()
        warehouse = Warehouse.of(settings)
        migrated = run(warehouse, settings.topics.label_versions_topic)
        for dataset, rows in migrated.items():
            console.print(f"{dataset}: {rows:,} rows" if rows else f"{dataset}: migrated before")
        console.print(f"the former files are in {warehouse.root / FORMER}: delete them once you are content")


_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


def _age(text: str) -> timedelta:
    match = re.fullmatch(r"(\d+)([dhm])", text.strip())
    if match is None:
        raise typer.BadParameter(f"{text!r} is not an age: write a number and d, h or m, e.g. 7d")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


@warehouse_app.command("expire")
def expire(older_than: str = typer.Option("7d", "--older-than", help="age of the snapshots to forget: 7d, 12h, 30m")) -> None:
    """Forget the tables' snapshots older than an age; tagged (pinned) and current snapshots stay."""
    from labelstore.warehouse import Warehouse

    age = _age(older_than)
    with reported_errors():
        expired = Warehouse.of(Settings()).expire_snapshots(datetime.now(UTC) - age)
        for dataset, count in expired.items():
            console.print(f"{dataset}: {count:,} snapshots older than {older_than} expired")
