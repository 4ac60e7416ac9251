"""`labelstore topics`: create and check the topics labelstore uses."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from labelstore.cli._common import reported_errors
from labelstore.settings import Settings

topics_app = typer.Typer(help="Create and check labelstore's Kafka topics.", no_args_is_help=True)
console = Console()


@topics_app.command("create")
def create() -> None:
    """Create missing topics with labelstore's configuration; check the existing ones."""
    from labelstore.events.admin import ensure_topics, topic_specs

    with reported_errors():
        settings = Settings()
        created = set(ensure_topics(settings))
        table = Table("topic", "partitions", "replicas", "config", "state")
        for spec in topic_specs(settings):
            config = ", ".join(f"{k}={v}" for k, v in sorted(spec.config.items()))
            state = "[green]created" if spec.name in created else "exists, checked"
            table.add_row(spec.name, str(spec.partitions), str(spec.replication_factor), config, state)
        console.print(table)
