"""`labelstore monitor`: label values, coverage, flips, time to label and drift, with alerts."""

from __future__ import annotations

from datetime import datetime

import typer
from rich.console import Console
from rich.table import Table

from labelstore.cli._common import reported_errors
from labelstore.settings import Settings

console = Console()
ALERT_EXIT_CODE = 3  # 1 is a labelstore error, 2 a usage error: 3 means "a threshold was crossed"


def monitor(
    labels: list[str] = typer.Argument(None, help="Labels to monitor (default: every label of the repository)."),
    window: str = typer.Option("day", "--window", help="hour | day | week (UTC; weeks start on Monday)."),
    axis: str = typer.Option("known", "--axis", help="known (recorded_at) | valid (event_time)."),
    start: str = typer.Option(None, "--start", help="ISO time: first window (default: the first version)."),
    end: str = typer.Option(None, "--end", help="ISO time, exclusive (default: after the last version)."),
    reference: str = typer.Option(None, "--reference", help="START..END of the reference window "
                                  "(default: the window before the current one)."),
    current: str = typer.Option(None, "--current", help="START..END of the current window "
                                "(default: the last complete window)."),
    psi: float = typer.Option(None, "--psi", help="PSI threshold (default: labelstore.yaml monitoring, else 0.2)."),
    p_value: float = typer.Option(None, "--p-value", help="chi-square p-value threshold (default 0.01)."),
    min_labels: int = typer.Option(None, "--min-labels", help="labels each window needs to be judged (default 50)."),
    alert: bool = typer.Option(False, "--alert", help="Publish an alert per crossed threshold to labels.alerts "
                               f"and exit with {ALERT_EXIT_CODE}."),
    rows: int = typer.Option(8, "--rows", help="Most recent windows to print."),
) -> None:
    """Monitor labels per rule version and time window; drift between a reference and a current window."""
    from labelstore.offline.monitor import monitor_label

    with reported_errors():
        settings = Settings()
        warehouse = _warehouse(settings)
        names = labels or sorted({rule.name for rule in warehouse.repository.rules})
        windows = {"reference": _span(reference, "--reference"), "current": _span(current, "--current")}
        reports = []
        for label in names:
            thresholds = _thresholds(settings, label, psi=psi, p_value=p_value, min_labels=min_labels)
            report = monitor_label(warehouse, label, window=window, axis=axis, start=_time(start, "--start"),
                                   end=_time(end, "--end"), thresholds=thresholds, **windows)
            _print(report, rows)
            reports.append(report)
        crossed = [d for report in reports for d in report.crossed]
        if alert and crossed:
            from labelstore.offline.alerts import publish_alerts

            published = publish_alerts(settings, reports)
            console.print(f"[red]{len(published)} alert(s)[/] published to {settings.topics.alerts_topic}")
            raise typer.Exit(ALERT_EXIT_CODE)
        console.print(f"[red]{len(crossed)} threshold(s) crossed[/]" if crossed else "[green]no drift alert[/]")


def _warehouse(settings: Settings):
    from labelstore.warehouse import Warehouse

    return Warehouse.of(settings)


def _thresholds(settings: Settings, label: str, **overrides):
    """The label's thresholds from labelstore.yaml (and the environment), with the options over them."""
    from pydantic import ValidationError

    from labelstore.offline.asof import QueryError
    from labelstore.settings import LabelMonitoring

    given = {name: value for name, value in overrides.items() if value is not None}
    try:
        return LabelMonitoring.model_validate({**settings.monitoring.for_label(label).model_dump(), **given})
    except ValidationError as exc:
        problems = "; ".join(f"--{str(e['loc'][0]).replace('_', '-')}: {e['msg']}" for e in exc.errors(include_url=False))
        raise QueryError(problems) from None


def _time(text: str | None, option: str) -> datetime | None:
    from labelstore.offline.asof import instant

    return instant(text, option)


def _span(text: str | None, option: str) -> tuple[datetime, datetime] | None:
    from labelstore.offline.asof import QueryError

    if text is None:
        return None
    low, separator, high = text.partition("..")
    if not separator or not low or not high:
        raise QueryError(f"{option} {text!r}: write START..END, e.g. 2026-01-05..2026-01-12T00:00:00Z")
    span = _time(low, f"{option} start"), _time(high, f"{option} end")
    if span[0] >= span[1]:
        raise QueryError(f"{option} {text!r}: the start must be before the end")
    return span


def _print(report, rows: int) -> None:
    title = f"{report.label}: per {report.window}, {report.axis} axis"
    if report.start is None:
        console.print(f"[bold]{title}[/]: no label versions")
        return
    recent = sorted(set(report.rates.column("window_start").to_pylist()))[-rows:]
    _print_values(report, recent, title)
    rates = Table("window", "rule", "labels", "positive rate", "labelled", "unlabelled", "coverage", "new", "flips",
                  title=f"{title}: rates (last {len(recent)} windows)")
    for row in report.rates.to_pylist():
        if row["window_start"] in recent:
            rates.add_row(_when(row["window_start"]), f"v{row['rule_version']}", f"{row['labels']:,}",
                          _share(row["positive_rate"]), f"{row['labelled']:,}", f"{row['unlabelled']:,}",
                          _share(row["coverage"]), f"{row['new_labels']:,}", f"{row['flips']:,}")
    console.print(rates)
    _print_latencies(report)
    _print_drift(report)


def _print_values(report, recent: list, title: str) -> None:
    values = Table("window", "rule", "produced in the window (share)", "held at its end (share)",
                   title=f"{title}: values")
    grouped: dict[tuple, list[dict]] = {}
    for row in report.distribution.to_pylist():
        if row["window_start"] in recent:
            grouped.setdefault((row["window_start"], row["rule_version"]), []).append(row)
    for (when, rule_version), group in grouped.items():
        produced = ", ".join(f"{r['value']} {r['labels']:,} ({_share(r['share'])})" for r in group if r["labels"])
        held = ", ".join(f"{r['value']} {r['standing']:,} ({_share(r['standing_share'])})" for r in group if r["standing"])
        values.add_row(_when(when), f"v{rule_version}", produced, held)
    console.print(values)


def _print_latencies(report) -> None:
    flips = Table("rule", "flips", "p50", "p90", "p99", "max", "maturity", "beyond maturity",
                  title=f"{report.label}: flips, after the entity's first event")
    for row in report.flips.to_pylist():
        late = f"{row['beyond_maturity']:,} ({_share(row['beyond_maturity_share'])})"
        flips.add_row(f"v{row['rule_version']}", f"{row['count']:,}",
                      *(f"{row[k]:.1f} d" for k in ("p50_days", "p90_days", "p99_days", "max_days")),
                      "-" if row["maturity_days"] is None else f"{row['maturity_days']:g} d",
                      f"[red]{late}" if row["beyond_maturity"] else late)
    console.print(flips)
    waits = Table("rule", "entities", "p50", "p90", "p99", title=f"{report.label}: time to label (first event -> first label)")
    for row in report.time_to_label.to_pylist():
        waits.add_row(f"v{row['rule_version']}", f"{row['entities']:,}",
                      *(_duration(row[k]) for k in ("p50_seconds", "p90_seconds", "p99_seconds")))
    console.print(waits)


def _print_drift(report) -> None:
    table = Table("rule", "statistic", "reference", "current", "labels (ref / cur)", "value", "threshold", "p-value", "",
                  title=f"{report.label}: drift")
    for drift in report.drift:
        outcome = "[red]ALERT" if drift.crossed else f"[yellow]{drift.note}" if drift.note else "[green]ok"
        limit = f"p < {drift.threshold:g}" if drift.statistic == "chi2" else f"> {drift.threshold:g}"
        table.add_row("all" if drift.rule_version is None else f"v{drift.rule_version}", drift.statistic,
                      _span_text(drift.reference), _span_text(drift.current),
                      f"{drift.reference_labels:,} / {drift.current_labels:,}", f"{drift.value:.4g}", limit,
                      "" if drift.p_value is None else f"{drift.p_value:.3g}", outcome)
    console.print(table)


def _when(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d}" if (moment.hour, moment.minute) == (0, 0) else f"{moment:%Y-%m-%d %H:%M}"


def _span_text(span: tuple[datetime, datetime]) -> str:
    return f"{_when(span[0])} .. {_when(span[1])}"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.1f} s"
