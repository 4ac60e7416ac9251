"""A label's distribution, positive rate and drift over time; the pipeline's health and lag.

Label monitoring is ``offline.monitor.monitor_label``'s report as JSON. Health is what
``labelstore status`` shows (``labelstore.status``), each part answered on its own: a cluster that
cannot be reached is a finding to show, not a reason for the page to fail.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

from labelstore.settings import Settings
from labelstore.offline.monitor import WINDOWS, monitor_label
from labelstore.warehouse import Warehouse
from labelstore.ui.exceptions import ExplorerError, NotFound
from labelstore.ui.rules import check_axis


def label_report(warehouse: Warehouse, labels: dict[str, str], label: str, *, axis: str = "valid",
                 window: str = "day") -> dict[str, Any]:
    """``labels``: every known label and its entity type (unknown names are refused here, by name)."""
    if label not in labels:
        raise NotFound(f"unknown label {label!r}; known: {', '.join(sorted(labels))}")
    check_axis(axis)
    if window not in WINDOWS:
        raise ExplorerError(f"unknown window {window!r}; use one of {', '.join(WINDOWS)}")
    report = monitor_label(warehouse, label, window=window, axis=axis)
    return {
        "label": label, "entity_type": labels[label], "axis": axis, "window": window,
        "start": report.start, "end": report.end, "positive_value": report.positive_value,
        "distribution": report.distribution.to_pylist(),
        "rates": report.rates.to_pylist(),
        "flips": report.flips.to_pylist(),
        "time_to_label": report.time_to_label.to_pylist(),
        "drift": [asdict(drift) for drift in report.drift],
    }


def health(settings: Settings, warehouse: Warehouse) -> dict[str, Any]:
    """The processor's and the materializer's lag and progress, and the warehouse's last commit."""
    from labelstore.status import materializer_status, processor_status

    parts = []
    for name, status in (("processor", processor_status), ("materializer", materializer_status)):
        try:
            parts.append(status(settings).to_dict())
        except Exception as exc:  # noqa: BLE001  (an unreachable cluster is itself what the page must show)
            parts.append({"name": name, "error": f"{type(exc).__name__}: {exc}"})
    commit = warehouse.last_commit()
    return {
        "checked_at": time.time(),
        "parts": parts,
        "warehouse": {
            "path": str(warehouse.root),
            "last_commit": commit.sequence if commit else None,
            "complete_through_ms": commit.complete_through_ms if commit else None,
        },
    }
