"""Label versions: what a label became, when, why, and under which rule version.

A version is emitted only when a label's value changes. Its ``version_id`` is derived from the
entity, the label, the rule version and the causing event, so replaying the same events yields the
same ids: any reader deduplicates by ``version_id`` and a retried write never becomes a second
version. The online processor and the offline backfill both build versions with ``label_changes``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from hashlib import sha1
from uuid import UUID

import orjson
from pydantic import ConfigDict, TypeAdapter, with_config

from labelstore.rules.model import LabelRule

VERSION_NAMESPACE = UUID("6f1c7c1e-2b1a-5d38-9a57-0d5b3c1f2e41")
LabelValue = str | bool | int | float | None


@with_config(ConfigDict(extra="forbid"))
@dataclass(frozen=True, slots=True)
class Cause:
    """The event that caused a change, and where it sits in the log."""

    event_id: UUID
    topic: str
    partition: int
    offset: int


# Dataclasses, not pydantic models: the processor makes one of each per label change, and a model
# cost 5 us to make even without validation. What comes from outside (``from_json``) is validated.
@with_config(ConfigDict(extra="forbid"))
@dataclass(frozen=True, slots=True)
class LabelVersion:
    version_id: UUID
    entity_type: str
    entity_id: str
    label: str
    rule_version: int
    value: LabelValue
    previous_value: LabelValue
    event_time: int  # epoch ms, business time of the causing event
    recorded_at: int  # epoch ms, broker log-append time of the causing event
    caused_by: Cause

    @property
    def latest_key(self) -> bytes:
        """Key on the compacted latest-label topic: one record per entity and label."""
        return latest_key(self.entity_type, self.label, self.entity_id)

    def to_json(self) -> bytes:
        return orjson.dumps(self)

    @classmethod
    def from_json(cls, data: bytes | str) -> LabelVersion:
        return _PARSE_VERSION(data)


def latest_key(entity_type: str, label: str, entity_id: str) -> bytes:
    # entity_id goes last: it is the only part that may contain the separator.
    return f"{entity_type}/{label}/{entity_id}".encode()


def version_id(entity_type: str, entity_id: str, label: str, rule_version: int, event_id: UUID | str) -> UUID:
    """``uuid5(VERSION_NAMESPACE, name)``, made from the digest's integer (half the cost of ``uuid5``)."""
    name = f"{entity_type}\x1f{entity_id}\x1f{label}\x1f{rule_version}\x1f{event_id}".encode()
    value = int.from_bytes(sha1(_NAMESPACE_BYTES + name).digest()[:16], "big")  # noqa: S324 - UUID5 is SHA-1
    return UUID(int=value & _NOT_VERSION_OR_VARIANT | _VERSION_5_RFC_4122)


_NAMESPACE_BYTES = VERSION_NAMESPACE.bytes
_NOT_VERSION_OR_VARIANT = ~((0xF000 << 64) | (0xC000 << 48))
_VERSION_5_RFC_4122 = (5 << 76) | (0x8000 << 48)


def label_changes(
    entity_type: str,
    entity_id: str,
    rules: Sequence[LabelRule],
    values: Sequence[LabelValue],
    current: Mapping[str, Mapping[str, Any]],
    *,
    event_time: int,
    recorded_at: int,
    cause: Cause | Callable[[], Cause],
) -> list[LabelVersion]:
    """The versions one event causes: one per label whose value differs from ``current``.

    ``current`` maps a label to its latest version as a dict (``value`` at least); a label with no
    version yet counts as NULL, so a rule that abstains emits nothing. ``cause`` may be a function
    that makes it: most events change no label, and the processor then builds none.
    """
    changes = []
    for rule, value in zip(rules, values, strict=True):
        previous = current.get(rule.name, _NO_VERSION).get("value")
        if value == previous and type(value) is type(previous):
            continue
        if not isinstance(cause, Cause):
            cause = cause()
        if not isinstance(value, LABEL_VALUE_TYPES):
            raise TypeError(f"rule {rule.key} gave {value!r}, not a label value")
        changes.append(LabelVersion(
            version_id=version_id(entity_type, entity_id, rule.name, rule.version, cause.event_id),
            entity_type=entity_type, entity_id=entity_id, label=rule.name, rule_version=rule.version,
            value=value, previous_value=previous, event_time=event_time, recorded_at=recorded_at, caused_by=cause,
        ))
    return changes


_NO_VERSION: Mapping[str, Any] = {}
LABEL_VALUE_TYPES = (str, bool, int, float, type(None))


def as_current(version: LabelVersion) -> dict[str, Any]:
    """What an entity keeps of its latest version of a label (also what the endpoint returns): the
    JSON form of those fields, built directly (a dump and re-parse cost more than the fold)."""
    cause = version.caused_by
    return {"version_id": str(version.version_id), "rule_version": version.rule_version, "value": version.value,
            "event_time": version.event_time, "recorded_at": version.recorded_at,
            "caused_by": {"event_id": str(cause.event_id), "topic": cause.topic, "partition": cause.partition,
                          "offset": cause.offset}}


_PARSE_VERSION = TypeAdapter(LabelVersion).validate_json
