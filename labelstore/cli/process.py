"""`labelstore process`: run a label processor worker (start several to share the partitions)."""

from __future__ import annotations

import typer

from labelstore.cli._common import reported_errors
from labelstore.settings import Settings

def process(
    web_port: int = typer.Option(None, help="HTTP port of this worker (each worker needs its own)."),
    transport: str = typer.Option(None, help="aiokafka (default) or confluent."),
    guarantee: str = typer.Option(None, help="at_least_once (default) or exactly_once."),
    log_level: str = typer.Option("info", help="labelstore's log level; Faust's own stays at warning."),
) -> None:
    """Fold events into entity state, evaluate label rules, emit label versions, serve latest labels."""
    with reported_errors():
        settings = Settings()
        overrides = {"web_port": web_port, "transport": transport, "processing_guarantee": guarantee}
        processor = settings.processor.model_validate(
            {**settings.processor.model_dump(), **{k: v for k, v in overrides.items() if v is not None}}
        )
        settings = settings.model_copy(update={"processor": processor})
        from labelstore.processors.worker import run_worker

        run_worker(settings, log_level)

