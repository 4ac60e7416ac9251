"""`labelstore warehouse`: look after the warehouse's Iceberg tables."""

from __future__ import annotations

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
