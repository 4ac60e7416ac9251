"""`labelstore materialize`: archive events and label versions into the warehouse (Iceberg tables + DuckDB views)."""

from __future__ import annotations

import logging
import signal

import typer
from rich.console import Console

from labelstore.cli._common import reported_errors
from labelstore.settings import Settings

console = Console()


def materialize(
    until_caught_up: bool = typer.Option(False, "--until-caught-up", help="Stop once the topics' current ends are archived."),
    log_level: str = typer.Option("info", help="Log level."),
) -> None:
    """Archive every event and label version into Hive-partitioned Parquet, resuming where it stopped."""
    from labelstore.materializers.materializer import Materializer

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from labelstore.shutdown import arm_stop_deadline

    stopping = []
    with reported_errors():
        settings = Settings()

        def request_stop(*_: object) -> None:
            if not stopping:
                arm_stop_deadline(settings.warehouse.shutdown_timeout_s, "the materializer")
            stopping.append(True)

        signal.signal(signal.SIGTERM, request_stop)
        materializer = Materializer(settings)
        if settings.warehouse.metrics_port:
            materializer.metrics.serve(settings.warehouse.metrics_host, settings.warehouse.metrics_port)
        try:
            stats = materializer.run(until_caught_up=until_caught_up, should_stop=lambda: bool(stopping))
        except KeyboardInterrupt:
            stats = materializer.stats
        console.print(f"archived {stats.records:,} records in {stats.commits:,} commits to "
                      f"{materializer.warehouse.root} ({stats.skipped:,} undecodable records left to the dead-letter topic)")
