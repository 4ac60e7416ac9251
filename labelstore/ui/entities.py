"""Entities in the explorer: search by id prefix, and one entity's timeline on both time axes.

The timeline is ``offline.explain`` (events in log order, label versions as known and as valid)
plus the state after each event (``offline.history.state_history`` in log order: what the
processor folded), so a reader sees which event moved which field and which label.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from labelstore.rules.model import LabelRule
from labelstore.warehouse import Warehouse
from labelstore.offline.explain import explain
from labelstore.offline.history import state_history
from labelstore.ui.exceptions import ExplorerError, NotFound

SEARCH_LIMIT_MAX = 200
# What a label version shows of itself; the cause is the event (its id and log position).
VERSION_COLUMNS = ("label", "rule_version", "previous_value", "value", "event_time", "recorded_at", "event_id",
                   "cause_topic", "cause_partition", "cause_offset", "version_id")


def check_entity_type(warehouse: Warehouse, entity_type: str) -> None:
    known = warehouse.repository.entity_types
    if entity_type not in known:
        raise NotFound(f"unknown entity type {entity_type!r}; known: {', '.join(known)}")


def search_entities(warehouse: Warehouse, entity_type: str, prefix: str = "", *, limit: int = 20) -> dict[str, Any]:
    """Entities of a type whose id starts with ``prefix``, with their event counts and latest labels."""
    check_entity_type(warehouse, entity_type)
    if not 1 <= limit <= SEARCH_LIMIT_MAX:
        raise ExplorerError(f"limit must be between 1 and {SEARCH_LIMIT_MAX}, not {limit}")
    connection = warehouse.connect()
    try:
        found = connection.sql(
            "SELECT entity_id, count(*) AS events, min(event_time) AS first_business_time, "
            "max(recorded_at) AS last_recorded_at FROM events WHERE entity_type = ? AND starts_with(entity_id, ?) "
            "GROUP BY entity_id ORDER BY entity_id LIMIT ?", params=[entity_type, prefix, limit + 1]).to_arrow_table()
        rows = found.to_pylist()
        latest = _latest_labels(connection, entity_type, [row["entity_id"] for row in rows[:limit]])
    finally:
        connection.close()
    for row in rows:
        row["labels"] = latest.get(row["entity_id"], {})
    return {"entity_type": entity_type, "prefix": prefix, "entities": rows[:limit], "more": len(rows) > limit}


def _latest_labels(connection, entity_type: str, entity_ids: list[str]) -> dict[str, dict[str, Any]]:
    if not entity_ids:
        return {}
    rows = connection.execute(
        "SELECT entity_id, label, arg_max(value, (recorded_at, cause_offset)) AS value FROM labels "
        "WHERE entity_type = ? AND list_contains(?, entity_id) GROUP BY ALL", [entity_type, entity_ids]).fetchall()
    latest: dict[str, dict[str, Any]] = {}
    for entity_id, label, value in rows:
        latest.setdefault(entity_id, {})[label] = value
    return latest


def entity_timeline(warehouse: Warehouse, entity_type: str, entity_id: str,
                    rules: Sequence[LabelRule]) -> dict[str, Any]:
    """Events (log order) with the state after each, and label versions on the known and the valid axis.

    ``rules``: the versions that judge the valid axis (the re-fold by business time); the known
    axis is what the processor emitted, each version naming the rule version that made it.
    """
    check_entity_type(warehouse, entity_type)
    _check_entity_exists(warehouse, entity_type, entity_id)
    explanation = explain(warehouse, entity_type, entity_id, rules)
    states = _states_after_events(warehouse, entity_type, entity_id)
    known = [_version(v) for v in explanation.known]
    events = []
    for seq, event in enumerate(explanation.events):
        event = {"seq": seq, **event, "state": states.get(event["event_id"], {})}
        event["caused"] = [{"label": v["label"], "value": v["value"], "rule_version": v["rule_version"]}
                           for v in known if v["event_id"] == event["event_id"]]
        events.append(event)
    return {
        "entity_type": entity_type, "entity_id": entity_id, "events": events, "known": known,
        "valid": [_version(v) for v in explanation.valid],
        "valid_rules": [{"label": r.name, "version": r.version} for r in rules if r.entity_type == entity_type],
    }


def _check_entity_exists(warehouse: Warehouse, entity_type: str, entity_id: str) -> None:
    connection = warehouse.connect()
    try:
        (count,) = connection.execute("SELECT count(*) FROM events WHERE entity_type = ? AND entity_id = ?",
                                      [entity_type, entity_id]).fetchall()[0]
    finally:
        connection.close()
    if not count:
        raise NotFound(f"no {entity_type} {entity_id!r} in the warehouse (no archived event has this id)")


def _states_after_events(warehouse: Warehouse, entity_type: str, entity_id: str) -> dict[str, dict[str, Any]]:
    declaration = warehouse.repository.declarations[entity_type]
    connection = warehouse.connect()
    try:
        states = state_history(connection, declaration, order="log", entity_ids=[entity_id],
                               codec=warehouse.repository.codec)
    finally:
        connection.close()
    fields = list(declaration.fields)
    return {row["event_id"]: {name: row[name] for name in fields} for row in states.to_pylist()}


def _version(row: dict[str, Any]) -> dict[str, Any]:
    return {name: row.get(name) for name in VERSION_COLUMNS}

