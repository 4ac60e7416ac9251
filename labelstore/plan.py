"""`plan` and `apply`: what registering a label repository would change, then changing it.

A plan is computed from three places and changes nothing: the repository's files (schemas,
declarations, rules), what the repository released before (``schemas/history/``) and the
registered world (topics on the cluster, rule versions in the catalog). ``apply`` carries a plan
out in this order, each step safe to repeat:

1. refuse if anything is invalid or incompatible (nothing is changed then);
2. create the missing topics, with their configuration;
3. record the current schemas as released (``schemas/history/``), so every reader can decode
   events written with them;
4. register new rule versions in the catalog. Activation stays explicit (`rules activate`); a
   label that is new runs its first version, as a processor does with the repository's rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from labelstore.catalog.store import RuleCatalog
from labelstore.errors import LabelstoreError
from labelstore.repository import Repository
from labelstore.rules.model import LabelRule
from labelstore.schemas.catalog import EventSchema, SchemaSet
from labelstore.settings import Settings

Action = Literal["add", "change", "keep"]


class PlanError(LabelstoreError):
    """The repository cannot be applied; the message lists every reason."""


@dataclass(frozen=True)
class Change:
    kind: Literal["entity type", "event type", "field", "topic", "schema release", "rule"]
    name: str
    action: Action
    detail: str = ""


@dataclass
class Plan:
    repository: Repository
    changes: list[Change] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    topics_checked: bool = True
    new_rules: list[LabelRule] = field(default_factory=list)

    @property
    def pending(self) -> list[Change]:
        return [change for change in self.changes if change.action != "keep"]

    @property
    def ok(self) -> bool:
        return not self.problems


def make_plan(repository: Repository, settings: Settings, *, catalog: RuleCatalog | None = None,
              check_topics: bool = True) -> Plan:
    """Validate the repository and list what ``apply`` would change; never changes anything."""
    plan = Plan(repository)
    try:
        schema_set = repository.schema_set
    except LabelstoreError as exc:
        plan.problems.append(str(exc))
        return plan
    plan.problems += _compatibility(schema_set)
    try:
        rules = repository.rules  # loads and checks the declarations first
    except LabelstoreError as exc:  # declarations and rules name their file, line and field
        plan.problems.append(str(exc))
        return plan
    plan.changes += _schema_changes(schema_set)
    if check_topics:
        plan.topics_checked = _topic_changes(plan, settings)
    plan.changes += _rule_changes(plan, rules, catalog or RuleCatalog(settings.rules.catalog_url))
    return plan


def apply_plan(plan: Plan, settings: Settings, *, catalog: RuleCatalog | None = None,
               author: str = "labelstore apply") -> list[Change]:
    """Carry out a plan made by ``make_plan``; returns what was done."""
    from labelstore.events.admin import ensure_topics
    from labelstore.schemas.catalog import freeze

    if not plan.ok:
        raise PlanError("nothing applied:\n  " + "\n  ".join(plan.problems))
    repository = plan.repository
    ensure_topics(settings)  # 2. creates the missing ones, checks the configuration of the others
    freeze(repository.schema_set, repository.history_dir)  # 3.
    catalog = catalog or RuleCatalog(settings.rules.catalog_url)
    for rule in plan.new_rules:  # 4.
        catalog.add(rule, author)
    return plan.pending


def _compatibility(schema_set: SchemaSet) -> list[str]:
    from labelstore.schemas.compat import check_schema_set
    from labelstore.schemas.exceptions import IncompatibleSchemaError

    try:
        check_schema_set(schema_set)
    except IncompatibleSchemaError as exc:
        return [str(exc)]
    return []


def _schema_changes(schema_set: SchemaSet) -> list[Change]:
    released_by_type: dict[str, list[EventSchema]] = {}
    for schema in schema_set.released.values():
        released_by_type.setdefault(schema.event_type, []).append(schema)
    known_entities = {schema.entity_type for schema in schema_set.released.values()}
    changes = [Change("entity type", entity, "add") for entity in schema_set.entity_types()
               if entity not in known_entities]
    for event_type, schema in sorted(schema_set.current.items()):
        released = released_by_type.get(event_type, [])
        if not released:
            changes.append(Change("event type", f"{schema.entity_type}.{event_type}", "add",
                                  f"fields: {', '.join(_payload_fields(schema))}"))
        elif schema.fingerprint not in schema_set.released:
            previous = _payload_fields(released[-1])
            added = [f for f in _payload_fields(schema) if f not in previous]
            removed = [f for f in previous if f not in _payload_fields(schema)]
            detail = "; ".join(filter(None, [added and f"new fields: {', '.join(added)}",
                                             removed and f"removed: {', '.join(removed)}"]))
            changes.append(Change("event type", f"{schema.entity_type}.{event_type}", "change",
                                  f"{detail or 'field attributes changed'} (compatible with every release)"))
            changes += [Change("field", f"{event_type}.payload.{name}", "add") for name in added]
        else:
            changes.append(Change("event type", f"{schema.entity_type}.{event_type}", "keep"))
        if schema.fingerprint not in schema_set.released:
            changes.append(Change("schema release", schema.fingerprint.hex(), "add", f"schemas/history/ ({event_type})"))
    return changes


def _payload_fields(schema: EventSchema) -> list[str]:
    payload = next(f for f in schema.schema["fields"] if f["name"] == "payload")
    return [f["name"] for f in payload["type"]["fields"]]


def _topic_changes(plan: Plan, settings: Settings) -> bool:
    """Topics to create; False when the cluster cannot be asked (the plan says so)."""
    from labelstore.events.admin import missing_topics

    try:
        missing, present = missing_topics(settings)
    except LabelstoreError as exc:
        plan.changes.append(Change("topic", "(all)", "keep", f"not checked: {exc}"))
        return False
    plan.changes += [Change("topic", spec.name, "add", f"{spec.partitions} partitions, "
                            + ", ".join(f"{k}={v}" for k, v in sorted(spec.config.items())))
                     for spec in missing]
    plan.changes += [Change("topic", name, "keep") for name in present]
    return True


def _rule_changes(plan: Plan, rules: Sequence[LabelRule], catalog: RuleCatalog) -> list[Change]:
    from labelstore.catalog.store import CatalogError

    changes = []
    for rule in rules:
        try:
            stored = catalog.get(rule.name, rule.version)
        except CatalogError:
            plan.new_rules.append(rule)
            later = " (activate with `labelstore rules activate`)" if catalog.versions(rule.name) else \
                " (a new label: its first version runs once applied)"
            changes.append(Change("rule", rule.key, "add", f"{rule.entity_type}, returns {rule.value_type}{later}"))
            continue
        if stored.rule != rule:
            plan.problems.append(f"rules: {rule.key} is registered with other content (by {stored.author}); rule "
                                 "versions are immutable: give the changed rule a new version number")
        else:
            changes.append(Change("rule", rule.key, "keep"))
    return changes
