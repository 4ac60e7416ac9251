"""The `labelstore` command. Each command group lives in its own module."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from labelstore.cli.demo import demo_app
from labelstore.cli.kafka import kafka_app
from labelstore.cli.materialize import materialize
from labelstore.cli.monitor import monitor
from labelstore.cli.offline import asof, check, explain, snapshot
from labelstore.cli.process import process
from labelstore.cli.repository import apply, codegen, init, plan
from labelstore.cli.rules import rules_app
from labelstore.cli.schemas import schemas_app
from labelstore.cli.status import status
from labelstore.cli.topics import topics_app
from labelstore.cli.ui import ui
from labelstore.cli.warehouse import warehouse_app

app = typer.Typer(
    name="labelstore",
    help="Event-sourced label store for machine-learning training labels, on Kafka.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _repository_option(
    repo: Path = typer.Option(None, "--repo", help="The label repository (default: LABELSTORE_REPO, else the "
                              "folder holding labelstore.yaml, from the current one upward)."),
) -> None:
    if repo is not None:
        # Through the environment, so settings and the processes a command starts see it too.
        os.environ["LABELSTORE_REPO"] = str(repo.expanduser().resolve())


for command in (init, plan, apply, codegen):
    app.command(command.__name__)(command)
app.add_typer(kafka_app, name="kafka")
app.add_typer(topics_app, name="topics")
app.add_typer(schemas_app, name="schemas")
app.add_typer(demo_app, name="demo")
app.add_typer(rules_app, name="rules")
app.add_typer(warehouse_app, name="warehouse")
app.command("process")(process)
app.command("materialize")(materialize)
app.command("status")(status)
app.command("monitor")(monitor)
app.command("ui")(ui)
for command in (asof, snapshot, check, explain):
    app.command(command.__name__)(command)


def main() -> None:
    app()
