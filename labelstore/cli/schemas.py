"""`labelstore schemas`: check schema changes against every released schema, and release them."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from labelstore.cli._common import reported_errors
from labelstore.settings import Settings

schemas_app = typer.Typer(help="Event schemas: list, check compatibility, freeze a release.", no_args_is_help=True)
console = Console()


@schemas_app.command("list")
def list_schemas() -> None:
    """Show the current event schemas and their fingerprints."""
    with reported_errors():
        schema_set = Settings().repository.schema_set
        table = Table("entity type", "event type", "fingerprint", "released")
        for event in sorted(schema_set.current.values(), key=lambda s: (s.entity_type, s.event_type)):
            released = "yes" if event.fingerprint in schema_set.released else "[yellow]not yet"
            table.add_row(event.entity_type, event.event_type, event.fingerprint.hex(), released)
        console.print(table)


@schemas_app.command("check")
def check() -> None:
    """Fail if a current schema cannot read released events or be read by released readers."""
    from labelstore.schemas.compat import check_schema_set

    with reported_errors():
        schema_set = Settings().repository.schema_set
        check_schema_set(schema_set)
        console.print(f"[green]compatible[/]: {len(schema_set.current)} event schemas against {len(schema_set.released)} released")


@schemas_app.command("freeze")
def freeze() -> None:
    """Record the current schemas as released (after `check` passes)."""
    from labelstore.schemas.catalog import freeze as freeze_schemas
    from labelstore.schemas.compat import check_schema_set

    with reported_errors():
        schema_set = Settings().repository.schema_set
        check_schema_set(schema_set)
        added = freeze_schemas(schema_set)
        console.print(f"released {len(added)} new schema(s)" + "".join(f"\n  {p.name}" for p in added))
