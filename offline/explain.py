"""Explain an entity: its events and which of them changed which label, on both time axes."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labelstore.rules.model import LabelRule
from labelstore.warehouse import Warehouse
from labelstore.offline.asof import QueryError
from labelstore.offline.history import label_history, state_history


@dataclass(frozen=True)
class Explanation:
    entity_type: str
    entity_id: str
    events: list[dict[str, Any]]  # in log order
    known: list[dict[str, Any]]  # versions the processor emitted (known axis)
    valid: list[dict[str, Any]]  # versions by business time, from the re-fold (valid axis)

    def changes_caused_by(self, event_id: str, axis: str = "known") -> list[dict[str, Any]]:
        return [v for v in getattr(self, axis) if v["event_id"] == event_id]


def explain(warehouse: Warehouse, entity_type: str, entity_id: str, rules: Sequence[LabelRule] | None = None) -> Explanation:
    declarations = warehouse.repository.declarations
    if entity_type not in declarations:
        raise QueryError(f"unknown entity type {entity_type!r}; known: {', '.join(sorted(declarations))}")
    rules = [r for r in (warehouse.repository.initial_rules() if rules is None else rules) if r.entity_type == entity_type]
    connection = warehouse.connect()
    try:
        events = connection.sql(
            'SELECT event_id, event_type, event_time, recorded_at, source, payload, topic, "partition", "offset" '
            'FROM events WHERE entity_type = ? AND entity_id = ? ORDER BY recorded_at, "offset"',
            params=[entity_type, entity_id]).to_arrow_table().to_pylist()
        if not events:
            raise QueryError(f"no archived events for {entity_type} {entity_id!r}")
        known = connection.sql(
            "SELECT * FROM labels WHERE entity_type = ? AND entity_id = ? ORDER BY recorded_at, cause_offset, label",
            params=[entity_type, entity_id]).to_arrow_table().to_pylist()
        states = state_history(connection, declarations[entity_type], order="valid", entity_ids=[entity_id],
                               codec=warehouse.repository.codec)
        valid = label_history(states, entity_type, rules, declarations[entity_type])
        valid = valid.sort_by([("event_time", "ascending"), ("cause_offset", "ascending")]).to_pylist()
    finally:
        connection.close()
    for event in events:
        event["payload"] = json.loads(event["payload"])
    return Explanation(entity_type, entity_id, events, known, valid)


def plot(explanation: Explanation, path: Path) -> Path:
    """A PNG timeline: events and label values over known time (top) and business time (bottom)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = sorted({v["label"] for v in explanation.known + explanation.valid})
    figure, axes = plt.subplots(2, 1, figsize=(11, 3 + 1.2 * max(1, len(labels))), sharex=False)
    for axis, versions, time_key, title in (
        (axes[0], explanation.known, "recorded_at", "as known (recorded_at: when the system learned it)"),
        (axes[1], explanation.valid, "event_time", "as valid (event_time: when it happened, late events in place)"),
    ):
        times = [e[time_key] for e in explanation.events]
        axis.scatter(times, [-1] * len(times), marker="|", s=300, color="black")
        for event in explanation.events:
            axis.annotate(event["event_type"], (event[time_key], -1), textcoords="offset points", xytext=(0, -14),
                          rotation=20, fontsize=7, ha="right")
        for row, label in enumerate(labels):
            steps = [v for v in versions if v["label"] == label]
            for index, version in enumerate(steps):
                end = steps[index + 1][time_key] if index + 1 < len(steps) else max(times)
                colour = {"positive": "tab:red", "negative": "tab:green"}.get(version["value"], "tab:blue")
                if version["value"] is not None:
                    axis.hlines(row, version[time_key], end, colors=colour, linewidth=6)
                axis.annotate(str(version["value"]), (version[time_key], row), textcoords="offset points",
                              xytext=(2, 6), fontsize=8)
        axis.set_yticks([-1, *range(len(labels))], ["events", *labels])
        axis.set_ylim(-2, len(labels))
        axis.set_title(title, fontsize=9, loc="left")
    figure.suptitle(f"{explanation.entity_type} {explanation.entity_id}")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
