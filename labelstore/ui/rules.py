"""Rule versions and rule diffs on either time axis, for the explorer.

The diff compares two versions of a label over the same state history, state by state, as
``offline.diff`` does; the axis decides the history's order and clock:

- ``known``: states in log order, divergences at ``recorded_at`` (``offline.diff``'s numbers);
- ``valid``: states in business-time order (late events in their place), divergences at
  ``event_time``. Demo data published in one burst has every ``recorded_at`` within seconds, so
  only business time spreads the divergences out: it is the default.
"""

from __future__ import annotations

import threading
from typing import Any

import pyarrow as pa

from labelstore.catalog.store import CatalogError, RuleCatalog
from labelstore.rules.model import LabelRule
from labelstore.settings import Settings
from labelstore.warehouse import Warehouse
from labelstore.offline.diff import AXES, diff, history_states
from labelstore.offline.history import label_history, state_history
from labelstore.ui.entities import check_entity_type
from labelstore.ui.exceptions import ExplorerError, NotFound

DIFF_LIMIT_MAX = 1_000  # differing entities listed, at most


def check_axis(axis: str) -> str:
    if axis not in AXES:
        raise ExplorerError(f"unknown time axis {axis!r}: use 'valid' (business time) or 'known' (when recorded)")
    return axis


class RuleVersions:
    """The catalog's rule versions; the repository's rule files when there is no catalog yet.

    A SQLite catalog that does not exist is not created: the explorer only reads.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def _catalog(self) -> RuleCatalog | None:
        url = self._settings.rules.catalog_url
        if url.startswith("sqlite:///") and not _sqlite_file_exists(url):
            return None
        return RuleCatalog(url)

    def listing(self) -> list[dict[str, Any]]:
        catalog = self._catalog()
        if catalog is None:
            rules = self._settings.repository.rules
            active = {r.name: r.version for r in self._settings.repository.initial_rules()}
            return [_described(r, active.get(r.name), None, None, []) for r in rules]
        activations: dict[str, list[dict[str, Any]]] = {}
        for activation in catalog.activations():
            activations.setdefault(activation.name, []).append(vars(activation))
        return [_described(s.rule, catalog.active_version(s.rule.name), s.author, s.created_at,
                           activations.get(s.rule.name, [])) for s in catalog.versions()]

    def get(self, name: str, version: int) -> LabelRule:
        catalog = self._catalog()
        if catalog is not None:
            try:
                return catalog.get(name, version).rule
            except CatalogError as exc:
                raise NotFound(str(exc)) from None
        for rule in self._settings.repository.rules:
            if (rule.name, rule.version) == (name, version):
                return rule
        raise NotFound(f"no rule {name} v{version} in the repository's rules (and no catalog)")

    def active(self) -> list[LabelRule]:
        """Each label's version running online (what judges the valid axis of a timeline)."""
        catalog = self._catalog()
        if catalog is None:
            return self._settings.repository.initial_rules()
        names = sorted({s.rule.name for s in catalog.versions()})
        versions = {name: catalog.active_version(name) for name in names}
        return [catalog.get(name, version).rule for name, version in versions.items() if version is not None]

    def labels(self) -> dict[str, str]:
        """Label name -> its entity type."""
        return {row["name"]: row["entity_type"] for row in self.listing()}


def _sqlite_file_exists(url: str) -> bool:
    from pathlib import Path

    return Path(url.removeprefix("sqlite:///")).exists()


def _described(rule: LabelRule, active: int | None, author, created_at, activations) -> dict[str, Any]:
    return {"name": rule.name, "version": rule.version, "entity_type": rule.entity_type,
            "value_type": rule.value_type, "description": rule.description.strip(), "expression": rule.expression,
            "active": active == rule.version, "author": author, "created_at": created_at,
            "activations": activations}


class StateHistories:
    """Each entity type's state history in either order, folded once per warehouse commit."""

    def __init__(self, warehouse: Warehouse) -> None:
        self._warehouse = warehouse
        self._cache: dict[tuple[str, str], tuple[int, pa.Table]] = {}
        self._lock = threading.Lock()

    def get(self, entity_type: str, axis: str) -> pa.Table:
        commit = self._warehouse.last_commit()
        sequence = commit.sequence if commit else 0
        with self._lock:
            cached = self._cache.get((entity_type, axis))
            if cached is None or cached[0] != sequence:
                cached = (sequence, self._fold(entity_type, axis))
                self._cache[(entity_type, axis)] = cached
        return cached[1]

    def _fold(self, entity_type: str, axis: str) -> pa.Table:
        return history_states(self._warehouse, self._warehouse.repository.declarations[entity_type], axis)


def rule_diff(warehouse: Warehouse, histories: StateHistories, rule_a: LabelRule, rule_b: LabelRule, *,
              axis: str = "valid", limit: int = 100) -> dict[str, Any]:
    """Final labels of both versions (confusion), the entities whose histories differ, divergences per day."""
    check_axis(axis)
    if not 1 <= limit <= DIFF_LIMIT_MAX:
        raise ExplorerError(f"limit must be between 1 and {DIFF_LIMIT_MAX}, not {limit}")
    if (rule_a.name, rule_a.entity_type) != (rule_b.name, rule_b.entity_type):
        raise ExplorerError(f"compare two versions of one label, not {rule_a.key} and {rule_b.key}")
    report = diff(warehouse, rule_a, rule_b, axis=axis, states=histories.get(rule_a.entity_type, axis), sample=0,
                  listed=limit)
    return {
        "label": rule_a.name, "entity_type": rule_a.entity_type, "version_a": rule_a.version,
        "version_b": rule_b.version, "axis": axis, "clock": report.clock, "entities": report.entities,
        "differing_entities": report.differing_entities, "first_divergence": report.first_divergence,
        "confusion": [{"a": a, "b": b, "entities": n} for (a, b), n in report.confusion.items()],
        "divergences_by_day": [{"day": day, "entities": n} for day, n in report.divergences_by_day],
        "differing": [{"entity_id": d.entity_id, "first_divergence": d.first_divergence, "final_a": d.final_a,
                       "final_b": d.final_b} for d in report.differing],
    }


def entity_histories(warehouse: Warehouse, rule_a: LabelRule, rule_b: LabelRule, entity_id: str, *,
                     axis: str = "valid") -> dict[str, Any]:
    """One entity's label history under each version, on the axis's clock (its change points)."""
    check_axis(axis)
    check_entity_type(warehouse, rule_a.entity_type)
    declaration = warehouse.repository.declarations[rule_a.entity_type]
    connection = warehouse.connect()
    try:
        states = state_history(connection, declaration, order="log" if axis == "known" else "valid",
                               entity_ids=[entity_id], codec=warehouse.repository.codec)
    finally:
        connection.close()
    if states.num_rows == 0:
        raise NotFound(f"no {rule_a.entity_type} {entity_id!r} in the warehouse (no archived event has this id)")
    histories = {}
    for key, rule in (("a", rule_a), ("b", rule_b)):
        versions = label_history(states, rule.entity_type, [rule], declaration).to_pylist()
        histories[key] = [{"at": v[AXES[axis]], "value": v["value"], "previous_value": v["previous_value"],
                           "event_id": v["event_id"]} for v in versions]
    return {"entity_id": entity_id, "axis": axis, "clock": AXES[axis], "version_a": rule_a.version,
            "version_b": rule_b.version, "history_a": histories["a"], "history_b": histories["b"]}
