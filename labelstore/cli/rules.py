"""`labelstore rules`: add, list, show, backfill, diff, activate and deactivate label rule versions."""

from __future__ import annotations

import getpass
from datetime import datetime
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import Progress
from rich.syntax import Syntax
from rich.table import Table

from labelstore.cli._common import reported_errors
from labelstore.settings import Settings

rules_app = typer.Typer(help="Versioned label rules: author, backfill, compare, switch on.", no_args_is_help=True)
console = Console()
AuthorOption = typer.Option(None, "--author", help="Who does this (default: the current user).")


def _catalog():
    from labelstore.catalog.store import RuleCatalog

    return RuleCatalog(Settings().rules.catalog_url)


def _warehouse():
    from labelstore.warehouse import Warehouse

    settings = Settings()
    return Warehouse.of(settings)


def _who(author: str | None) -> str:
    return author or getpass.getuser()


@rules_app.command("add")
def add(path: Path = typer.Argument(..., help="A rule file: .yaml or .sql"), author: str = AuthorOption) -> None:
    """Validate a rule file and add it to the catalog as a new, immutable version."""
    from labelstore.rules.files import read_rule_file

    with reported_errors():
        rule = read_rule_file(path)
        stored, new = _catalog().add(rule, _who(author))
        console.print(f"{'added' if new else 'already in the catalog:'} [bold]{rule.key}[/] ({rule.entity_type}, "
                      f"returns {rule.value_type}) by {stored.author}")


@rules_app.command("list")
def list_rules() -> None:
    """Every rule version, and which one runs online."""
    with reported_errors():
        catalog = _catalog()
        table = Table("label", "version", "entity", "type", "online", "author", "added", "description")
        for stored in catalog.versions():
            rule = stored.rule
            live = "[green]active" if catalog.active_version(rule.name) == rule.version else ""
            table.add_row(rule.name, str(rule.version), rule.entity_type, rule.value_type, live, stored.author,
                          f"{stored.created_at:%Y-%m-%d %H:%M}", rule.description.strip()[:60])
        console.print(table)


@rules_app.command("show")
def show(name: str, version: int = typer.Option(None, "--version", "-v", help="Default: the latest.")) -> None:
    """A rule version's expression and the label's activation history."""
    with reported_errors():
        catalog = _catalog()
        stored = catalog.get(name, version)
        rule = stored.rule
        console.print(f"[bold]{rule.key}[/] ({rule.entity_type}, returns {rule.value_type}"
                      f"{f', mature after {rule.maturity_days:g} days' if rule.maturity_days else ''}), "
                      f"added by {stored.author} on {stored.created_at:%Y-%m-%d %H:%M}")
        if rule.description:
            console.print(rule.description.strip())
        console.print(Syntax(rule.expression, "sql", line_numbers=True))
        history = catalog.activations(name)
        if history:
            table = Table("version", "by", "when", "applies from (log-append time)", "rules-topic offset",
                          title="activations")
            for activation in history:
                table.add_row("off" if activation.version is None else str(activation.version), activation.activated_by,
                              f"{activation.activated_at:%Y-%m-%d %H:%M:%S}",
                              f"{activation.effective_from:%Y-%m-%d %H:%M:%S.%f}"[:-3] if activation.effective_from else "",
                              "" if activation.offset is None else str(activation.offset))
            console.print(table)
        else:
            console.print(f"online: v{catalog.active_version(name)} (built in, never activated)")


@rules_app.command("backfill")
def backfill(name: str, version: int = typer.Option(..., "--version", "-v"),
             engine: str = typer.Option("duckdb", "--engine", help="duckdb | spark (the rule's SQL translated).")) -> None:
    """Evaluate a rule version over the whole state history and store its label history."""
    from labelstore.offline.backfill import backfill as run

    with reported_errors():
        rule = _catalog().get(name, version).rule
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task(f"backfilling {rule.key}", total=1.0)
            result = run(_warehouse(), rule, engine=engine,
                         progress=lambda step, done: progress.update(task, completed=done, description=step))
        console.print(f"{rule.key}: {result.versions:,} label versions over {result.state_rows:,} states, "
                      f"evaluated in {result.seconds:.2f} s -> {result.path}")


@rules_app.command("diff")
def diff(
    name: str,
    version_a: int = typer.Argument(...),
    version_b: int = typer.Argument(...),
    axis: str = typer.Option("known", "--axis", help="known: states in log order, times recorded; valid: states "
                             "by business time (late events in their place), times of the events."),
    start: datetime = typer.Option(None, "--from", help="Only divergences from this time (on the axis)."),
    end: datetime = typer.Option(None, "--to", help="Only states up to this time (on the axis); final labels at it."),
    sample: int = typer.Option(5, help="Entities to show with both histories."),
    png: Path = typer.Option(None, "--png", help="Also draw the confusion matrix and divergences per day."),
) -> None:
    """Compare two versions of a rule over the history: final labels, differing entities, first divergence."""
    from labelstore.offline.diff import diff as run
    from labelstore.offline.diff import plot

    with reported_errors():
        catalog = _catalog()
        rule_a, rule_b = catalog.get(name, version_a).rule, catalog.get(name, version_b).rule
        report = run(_warehouse(), rule_a, rule_b, axis=axis, start=_utc(start), end=_utc(end), sample=sample)
        values = sorted({v for pair in report.confusion for v in pair}, key=lambda v: (v is None, str(v)))
        matrix = Table(f"v{version_a} \\ v{version_b}", *map(str, values), title=f"{name}: final labels ({report.entities:,} entities)")
        for a in values:
            matrix.add_row(str(a), *(f"{report.confusion.get((a, b), 0):,}" for b in values))
        console.print(matrix)
        console.print(f"label histories differ for [bold]{report.differing_entities:,}[/] of {report.entities:,} entities; "
                      f"first divergence: {report.first_divergence or 'none'}")
        for entity in report.samples:
            console.print(f"  {entity.entity_id} (diverges {entity.first_divergence:%Y-%m-%d %H:%M:%S}): "
                          f"v{version_a} {_history(entity.history_a)} | v{version_b} {_history(entity.history_b)}")
        if png is not None:
            console.print(f"chart: {plot(report, png)}")


@rules_app.command("activate")
def activate(name: str, version: int, author: str = AuthorOption) -> None:
    """Make running processors use this version, from a recorded point in the log; no restart."""
    from labelstore.catalog.activation import ActivationRecord

    with reported_errors():
        rule = _catalog().get(name, version).rule
        _publish(ActivationRecord(label=name, entity_type=rule.entity_type, rule=rule, activated_by=_who(author)), version)


@rules_app.command("deactivate")
def deactivate(name: str, author: str = AuthorOption) -> None:
    """Stop computing this label online (activate a version again to resume or roll back)."""
    from labelstore.catalog.activation import ActivationRecord

    with reported_errors():
        rule = _catalog().get(name).rule
        _publish(ActivationRecord(label=name, entity_type=rule.entity_type, rule=None, activated_by=_who(author)), None)


def _publish(record, version: int | None) -> None:
    from datetime import UTC

    from labelstore.catalog.activation import publish_activation

    settings = Settings()
    partition, offset, appended_ms = publish_activation(settings, record)
    effective = datetime.fromtimestamp(appended_ms / 1000, UTC)
    _catalog().record_activation(record.label, version, record.activated_by, topic=settings.topics.rules_topic,
                                 partition=partition, offset=offset, effective_from=effective)
    what = f"v{version}" if version is not None else "off"
    console.print(f"{record.label} {what} for every event logged from {effective:%Y-%m-%d %H:%M:%S.%f} "
                  f"({settings.topics.rules_topic} offset {offset})")


def _history(history) -> str:
    return " -> ".join(f"{value}@{at:%m-%d %H:%M}" for at, value in history) or "(no label)"


def _utc(value: datetime | None) -> datetime | None:
    from datetime import UTC

    return value if value is None or value.tzinfo else value.replace(tzinfo=UTC)
