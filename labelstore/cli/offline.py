"""Offline commands over the warehouse: asof, snapshot, check, explain."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from labelstore.cli._common import reported_errors
from labelstore.settings import Settings

console = Console()
KnownAt = typer.Option(None, "--known-at", help="ISO time: as the system knew it then (recorded_at <= T).")
ValidAt = typer.Option(None, "--valid-at", help="ISO time: as it was in business time (event_time <= T).")
MaturityOption = typer.Option("all", "--maturity", help="all | mature (only mature labels) | flag (a mature column).")


def _warehouse():
    from labelstore.warehouse import Warehouse

    settings = Settings()
    return Warehouse.of(settings)


def asof(
    labels: str = typer.Argument(..., help="Label name(s), comma-separated, of one entity type."),
    entity: list[str] = typer.Option(None, "--entity", help="Entity id (repeatable); default: every entity."),
    known_at: str = KnownAt,
    valid_at: str = ValidAt,
    spine: Path = typer.Option(None, "--spine", help="Parquet or CSV spine: entity_id plus a timestamp column."),
    time_column: str = typer.Option("ts", "--time-column", help="The spine's timestamp column."),
    axis: str = typer.Option("known", "--axis", help="Which axis the spine's times are on: known | valid."),
    maturity: str = MaturityOption,
    rule_version: list[str] = typer.Option(None, "--rule-version", help="LABEL=V: another (backfilled) rule version."),
    output: Path = typer.Option(None, "--output", "-o", help="Write the result to .parquet or .csv."),
    limit: int = typer.Option(20, help="Rows to print."),
    engine: str = typer.Option("duckdb", "--engine", help="duckdb | spark (master: LABELSTORE_SPARK__MASTER)."),
) -> None:
    """Labels at a point in time, on the known axis, the valid axis or both; or joined to a spine."""
    import pyarrow.csv as pv
    import pyarrow.parquet as pq

    from labelstore.offline.asof import QueryError, as_of

    with reported_errors():
        names = [name.strip() for name in labels.split(",") if name.strip()]
        versions = _versions(rule_version or [])
        if spine is not None:
            if axis not in ("known", "valid"):
                raise QueryError(f"--axis must be known or valid, not {axis!r}")
            table = pq.read_table(spine) if spine.suffix == ".parquet" else pv.read_csv(spine)
            when = {"known_at": time_column, "valid_at": valid_at} if axis == "known" else {"valid_at": time_column, "known_at": known_at}
            result = as_of(_warehouse(), names, spine=table, maturity=maturity, rule_versions=versions, engine=engine,
                           **when)
        else:
            result = as_of(_warehouse(), names, known_at=known_at, valid_at=valid_at, entity_ids=entity or None,
                           maturity=maturity, rule_versions=versions, engine=engine)
        if output is not None:
            pq.write_table(result, output) if output.suffix == ".parquet" else pv.write_csv(result, output)
            console.print(f"{result.num_rows:,} rows written to {output}")
        _print(result, limit)


def snapshot(
    name: str = typer.Argument(..., help="Snapshot name (a folder under <warehouse>/snapshots)."),
    labels: str = typer.Option("fraud", "--labels", help="Label names, comma-separated, of one entity type."),
    known_at: str = typer.Option(None, "--known-at", help="ISO time: the snapshot is what was known then."),
    valid_at: str = ValidAt,
    maturity: str = MaturityOption,
    replace: bool = typer.Option(False, "--replace", help="Replace an existing snapshot with other content."),
    reread: bool = typer.Option(False, "--reread", help="Compute an existing snapshot again from the Iceberg "
                                "snapshots its manifest names, and check it is the same."),
) -> None:
    """Write labels.parquet and manifest.json for a training set; the same snapshot later gives the same hash."""
    from labelstore.offline.asof import QueryError
    from labelstore.offline.snapshot import reread as compute_again, snapshot as take

    with reported_errors():
        warehouse = _warehouse()
        if reread:
            table = compute_again(warehouse, name)
            console.print(f"snapshot [bold]{name}[/]: {table.num_rows:,} rows re-read from its Iceberg snapshots, "
                          "the same as written")
            return
        if known_at is None:
            raise QueryError("--known-at is required to take a snapshot (e.g. --known-at 2026-03-01T00:00:00Z)")
        manifest = take(warehouse, name, [n.strip() for n in labels.split(",")], known_at=known_at,
                        valid_at=valid_at, maturity=maturity, replace=replace)
        console.print(f"snapshot [bold]{name}[/]: {manifest['rows']:,} rows, sha256 {manifest['content_sha256']}")
        console.print(f"{warehouse.snapshots_dir / name}/labels.parquet, manifest.json; Iceberg snapshots "
                      f"{manifest['iceberg_snapshots']} tagged {manifest['iceberg_tag']}")


def check() -> None:
    """Recompute the label history from the events archive and compare it with what the processor emitted."""
    from labelstore.offline.check import check as run_check

    with reported_errors():
        report = run_check(_warehouse())
        table = Table("label", "matching", "missing", "extra", "different", "first divergence")
        for label in report.labels:
            first = label.first_divergence
            where = (f"{first.kind}: {first.entity_id} at {first.recorded_at:%Y-%m-%d %H:%M:%S.%f} "
                     f"(online {first.online!r}, offline {first.offline!r})") if first else ""
            style = "green" if label.consistent else "red"
            table.add_row(f"[{style}]{label.label}", f"{label.matching:,}", f"{label.missing:,}", f"{label.extra:,}",
                          f"{label.different:,}", where)
        console.print(table)
        if not report.consistent:
            raise typer.Exit(1)


def explain(
    entity_type: str = typer.Argument(..., help="order, content, ..."),
    entity_id: str = typer.Argument(...),
    png: Path = typer.Option(None, "--png", help="Where to write the timeline plot (default: <type>-<id>.png)."),
) -> None:
    """The timeline of an entity's events and label versions, on both time axes, printed and as a PNG."""
    from labelstore.offline.explain import explain as run_explain
    from labelstore.offline.explain import plot

    with reported_errors():
        explanation = run_explain(_warehouse(), entity_type, entity_id)
        table = Table("recorded_at", "event_time", "event", "offset", "labels (as known then)",
                      title=f"{entity_type} {entity_id}")
        for event in explanation.events:
            changes = ", ".join(f"{v['label']}: {v['previous_value']} -> {v['value']}"
                                for v in explanation.changes_caused_by(event["event_id"]))
            details = json.dumps(event["payload"], separators=(",", ":"))
            table.add_row(f"{event['recorded_at']:%Y-%m-%d %H:%M:%S.%f}"[:-3], f"{event['event_time']:%Y-%m-%d %H:%M:%S}",
                          f"{event['event_type']} {details[:60]}", f"{event['partition']}/{event['offset']}", changes)
        console.print(table)
        valid = Table("valid from (event_time)", "label", "value", "previous", "caused by",
                      title="label history by business time (re-folded, late events in place)")
        for version in explanation.valid:
            valid.add_row(f"{version['event_time']:%Y-%m-%d %H:%M:%S}", version["label"], str(version["value"]),
                          str(version["previous_value"]), version["event_id"])
        console.print(valid)
        path = plot(explanation, png or Path(f"{entity_type}-{entity_id}.png"))
        console.print(f"timeline plot: {path}")


def _versions(pairs: list[str]) -> dict[str, int]:
    from labelstore.offline.asof import QueryError

    versions = {}
    for pair in pairs:
        name, _, version = pair.partition("=")
        if not version.isdigit():
            raise QueryError(f"--rule-version {pair!r}: write LABEL=VERSION, e.g. fraud=2")
        versions[name.strip()] = int(version)
    return versions


def _print(result, limit: int) -> None:
    table = Table(*result.column_names, title=f"{result.num_rows:,} rows" + (f" (first {limit})" if result.num_rows > limit else ""))
    for row in result.slice(0, limit).to_pylist():
        table.add_row(*("" if v is None else str(v) for v in row.values()))
    console.print(table)
