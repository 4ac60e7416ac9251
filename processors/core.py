"""The label processor's logic, free of any stream framework: a batch of raw Kafka messages of one
entity topic, plus the stored records of their entities, in; new entity records, label versions
and dead letters out.

Steps for each batch:
1. decode and check every message; bad ones become dead letters with the reason;
2. fold each good event into its entity's state, skipping events the stored record already holds
   (a replay after a crash);
3. evaluate the label rules once for all new states (DuckDB, one query);
4. walk the states in log order and emit a version for every label whose value changed.

A record whose schema or event type the worker does not know yet makes it look at its label
repository once more (``labelstore.intake.Admission``): after `labelstore apply` released a new
event type or field, the worker reads it rather than dead-letter it, without a restart.

The caller must make the versions and dead letters durable *before* it stores the entity records:
then a record in the store implies its versions are in Kafka, and a replay re-emits (same
``version_id``) rather than loses.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from uuid import UUID

import orjson

from labelstore.declarations import EntityDeclaration
from labelstore.fold import EntityFold, State, UnfoldableEventError
from labelstore.intake import DEFAULT_LIMITS, Admission, Limits, Rejection
from labelstore.labels import Cause, LabelVersion, as_current, label_changes
from labelstore.rules.evaluation import RuleEvaluator
from labelstore.rules.model import LabelRule
from labelstore.processors.rulebook import RuleBook
from labelstore.repository import RepositoryWatch
from labelstore.schemas.codec import AvroCodec, DecodedEvent

# Distinct rule inputs whose label values an evaluator remembers (see ``RuleEvaluator``).
RULE_INPUTS_REMEMBERED = 65_536
# A dead letter whose key, value and headers are larger goes without them (its headers say where
# the record is): librdkafka refuses to produce more than 1,000,000 bytes by default, and the
# dead letter adds its reason headers to what came in.
DEAD_LETTER_CONTENT_BYTES = 900_000


class RawMessage(NamedTuple):  # built per event: a tuple costs ~0.7 us, a frozen dataclass ~2.4 us
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = ()


@dataclass(frozen=True)
class DeadLetter:
    message: RawMessage
    error_type: str
    reason: str

    @classmethod
    def of(cls, message: RawMessage, error_type: str, reason: str) -> DeadLetter:
        """The dead letter of ``message``; one too large to send again keeps only where it came from."""
        size = len(message.key or b"") + len(message.value or b"") + sum(
            len(name) + len(value or b"") for name, value in message.headers)
        if size <= DEAD_LETTER_CONTENT_BYTES:
            return cls(message, error_type, reason)
        return cls(message._replace(key=None, value=None, headers=()), error_type,
                   f"{reason}\n(the dead letter leaves out the record's {size:,} bytes of key, value and headers: "
                   f"read it at its source topic, partition and offset)")


@dataclass
class BatchResult:
    records: dict[bytes, dict[str, Any]] = field(default_factory=dict)
    partitions: dict[bytes, int] = field(default_factory=dict)  # entity key -> partition its events came from
    versions: list[LabelVersion] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    skipped_replays: int = 0


class _Folded(NamedTuple):
    key: bytes
    state: State
    message: RawMessage
    decoded: DecodedEvent
    event_time: int

    def cause(self) -> Cause:
        # The decoder gave the id in its canonical form: its hex digits are the UUID's integer.
        event_id = UUID(int=int(self.decoded.record["event_id"].replace("-", ""), 16))
        return Cause(event_id, self.message.topic, self.message.partition, self.message.offset)


class EntityProcessor:
    """Processes batches of one entity type's event topic."""

    def __init__(self, declaration: EntityDeclaration, rules: Sequence[LabelRule], *,
                 codec: AvroCodec | None = None, validate_payloads: bool = True,
                 rulebook: RuleBook | None = None, watch: RepositoryWatch | None = None,
                 limits: Limits = DEFAULT_LIMITS) -> None:
        self.entity_type = declaration.entity_type
        self.declaration = declaration
        self.fold = EntityFold(declaration)
        self.rules = tuple(rules)
        self.evaluator = RuleEvaluator(declaration, self.rules, cache_size=RULE_INPUTS_REMEMBERED)
        self._evaluators = {_versions(self.rules): self.evaluator}
        self.rulebook = rulebook
        self.admission = Admission(codec or AvroCodec(), {self.entity_type: declaration},
                                   validate_payloads=validate_payloads, watch=watch, on_reload=self._take_up,
                                   limits=limits)

    def _take_up(self, declarations: Mapping[str, EntityDeclaration]) -> None:
        """The repository changed on disk (see ``Admission``): fold and evaluate with its declaration."""
        declaration = declarations.get(self.entity_type)
        if declaration is None or declaration == self.declaration:
            return
        self.declaration, self.fold = declaration, EntityFold(declaration)
        self.evaluator = RuleEvaluator(declaration, self.rules, cache_size=RULE_INPUTS_REMEMBERED)
        self._evaluators = {_versions(self.rules): self.evaluator}

    def process(self, batch: Sequence[RawMessage], stored: Callable[[bytes], Mapping[str, Any] | None], *,
                wait_for_rules: bool = True) -> BatchResult:
        """``stored(key)`` gives an entity's stored record, which is left as it is: the result holds
        new records. ``wait_for_rules=False`` evaluates with the activations known now; the caller then makes
        sure none was missing (see ``processors.app``)."""
        result = BatchResult()
        folded = self._fold_batch(batch, stored, result)
        rules_of = self._rules_of(folded, wait_for_rules)
        values = self._evaluate(folded, rules_of)
        for item, rules, row in zip(folded, rules_of, values, strict=True):
            record = result.records[item.key]
            versions = label_changes(
                self.entity_type, item.decoded.record["entity_id"], rules, row, record["labels"],
                event_time=item.event_time, recorded_at=item.message.timestamp_ms, cause=item.cause,
            )
            if versions:
                # A new dict: the stored record's stays as it was (see ``process``).
                record["labels"] = {**record["labels"], **{version.label: as_current(version) for version in versions}}
                result.versions.extend(versions)
        return result

    def _rules_of(self, folded: Sequence[_Folded], wait_for_rules: bool) -> list[tuple[LabelRule, ...]]:
        """The rule versions in force for each event: by its log-append time (see ``RuleBook``)."""
        if self.rulebook is None or not folded:
            return [self.rules] * len(folded)
        if wait_for_rules:
            self.rulebook.ensure_known_through(max(item.message.timestamp_ms for item in folded))
        if not self.rulebook.changes(self.entity_type):
            return [self.rules] * len(folded)
        return [self.rulebook.rules_at(self.entity_type, item.message.timestamp_ms) for item in folded]

    def _evaluate(self, folded: Sequence[_Folded], rules_of: Sequence[tuple[LabelRule, ...]]) -> list[tuple]:
        """Rule values per event, one DuckDB query per distinct set of rule versions in the batch."""
        groups: dict[tuple, list[int]] = {}
        for index, rules in enumerate(rules_of):
            groups.setdefault(_versions(rules), []).append(index)
        values: list[tuple] = [()] * len(folded)
        for key, indices in groups.items():
            evaluator = self._evaluators.get(key)
            if evaluator is None:
                evaluator = self._evaluators[key] = RuleEvaluator(self.declaration, rules_of[indices[0]],
                                                                  cache_size=RULE_INPUTS_REMEMBERED)
            for index, row in zip(indices, evaluator.evaluate([folded[i].state for i in indices]), strict=True):
                values[index] = row
        return values

    def _fold_batch(self, batch: Sequence[RawMessage], stored: Callable[[bytes], Mapping[str, Any] | None],
                    result: BatchResult) -> list[_Folded]:
        folded = []
        for message in batch:
            decoded = self._decode(message, result)
            if decoded is None:
                continue
            key = message.key
            record = result.records.get(key) or _copy(stored(key)) or new_record(self.fold.initial_state())
            if message.offset <= record["offset"]:
                result.skipped_replays += 1
                continue
            try:
                state = self.fold.apply(record["state"], decoded.event_type, decoded.record)
            except UnfoldableEventError as exc:
                result.dead_letters.append(DeadLetter.of(message, "unfoldable-event", str(exc)))
                continue
            record["state"], record["offset"] = state, message.offset
            result.records[key] = record
            result.partitions[key] = message.partition
            folded.append(_Folded(key, state, message, decoded, decoded.record["event_time"]))
        return folded

    def _decode(self, message: RawMessage, result: BatchResult) -> DecodedEvent | None:
        admitted = self.admission.admit(self.entity_type, message.key, message.value, message.timestamp_ms)
        if isinstance(admitted, Rejection):
            result.dead_letters.append(DeadLetter.of(message, admitted.error_type, admitted.reason))
            return None
        return admitted


def _versions(rules: Sequence[LabelRule]) -> tuple[tuple[str, int], ...]:
    return tuple((rule.name, rule.version) for rule in rules)


def new_record(initial_state: State) -> dict[str, Any]:
    """What the processor stores per entity: its state, its current labels, the last offset folded."""
    return {"state": initial_state, "labels": {}, "offset": -1}


def encode_record(record: Mapping[str, Any]) -> bytes:
    return orjson.dumps(record)


def decode_record(data: bytes | None) -> dict[str, Any] | None:
    return None if data is None else orjson.loads(data)


def _copy(record: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The processor's own record: its state and labels are replaced, never changed in place."""
    if record is None:
        return None
    return {"state": record["state"], "labels": record["labels"], "offset": record["offset"]}

