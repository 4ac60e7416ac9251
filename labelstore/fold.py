"""The fold: an entity's events, in log order, to its successive states. One implementation.

The online processor folds each event as it arrives; the offline re-fold runs the same ``EntityFold``
over the events archive, so both produce the same states from the same events.

A state is a plain dict of the declared fields, holding only JSON-friendly values: timestamps as
epoch milliseconds (UTC), set-valued fields as sorted tuples. That keeps it cheap to store in a
changelogged table and to hand to DuckDB for rule evaluation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from labelstore.declarations import EntityDeclaration, FieldOperation
from labelstore.errors import LabelstoreError

State = dict[str, Any]
Step = Callable[[State, Mapping[str, Any]], None]


class UnfoldableEventError(LabelstoreError):
    """The entity's declaration has no operations for this event type."""


class EntityFold:
    """Applies an entity declaration's operations, compiled once into small steps per event type."""

    def __init__(self, declaration: EntityDeclaration) -> None:
        self.declaration = declaration
        self._width = len(declaration.fields)
        self._steps: dict[str, tuple[Step, ...]] = {
            event_type: tuple(_compile(op, declaration) for op in declaration.operations(event_type))
            for event_type in declaration.events
        }

    def initial_state(self) -> State:
        return self.declaration.initial_state()

    def apply(self, state: State | None, event_type: str, record: Mapping[str, Any]) -> State:
        """The state after one event; ``state`` itself is left unchanged."""
        try:
            steps = self._steps[event_type]
        except KeyError:
            raise UnfoldableEventError(
                f"entity {self.declaration.entity_type!r} declares no operations for event type {event_type!r}"
            ) from None
        if state is None:
            new_state = self.initial_state()
        elif len(state) == self._width:
            new_state = dict(state)
        else:  # stored before the declaration gained fields: those start at their defaults
            new_state = {**self.initial_state(), **state}
        for step in steps:
            step(new_state, record)
        return new_state

    def states(self, events: Iterable[tuple[str, Mapping[str, Any]]], state: State | None = None) -> list[State]:
        """Every state along a sequence of (event_type, record) of one entity, in order."""
        history = []
        for event_type, record in events:
            state = self.apply(state, event_type, record)
            history.append(state)
        return history


def _compile(operation: FieldOperation, declaration: EntityDeclaration) -> Step:
    field = operation.field
    field_type = declaration.fields[field].type
    read = _reader(operation.source, field_type) if operation.source else (lambda record, v=operation.value: v)
    guard = _reader(operation.when_present, "any") if operation.when_present else None
    apply = _OPERATIONS[operation.op]
    if_present = operation.if_present

    def step(state: State, record: Mapping[str, Any]) -> None:
        if guard is not None and guard(record) is None:
            return
        value = read(record)
        if value is None and if_present:
            return
        apply(state, field, value)

    return step


def _reader(path: str, field_type: str) -> Callable[[Mapping[str, Any]], Any]:
    parts = tuple(path.split("."))
    convert = to_epoch_ms if field_type == "timestamp" else None

    def read(record: Mapping[str, Any]) -> Any:
        value: Any = record
        for part in parts:
            if value is None:
                return None
            value = value[part]
        return convert(value) if convert is not None and value is not None else value

    return read


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MILLISECOND = timedelta(milliseconds=1)


def to_epoch_ms(value: datetime | int) -> int:
    """Epoch milliseconds (UTC) of an Avro timestamp-millis value, as fastavro returns it."""
    # Integer arithmetic: float timestamps can land a millisecond off.
    return value if isinstance(value, int) else (value - EPOCH) // MILLISECOND


def _set(state: State, field: str, value: Any) -> None:
    state[field] = value


def _set_once(state: State, field: str, value: Any) -> None:
    if state[field] is None:
        state[field] = value


def _unset(state: State, field: str, value: Any) -> None:
    state[field] = () if isinstance(state[field], tuple | list) else None


def _add(state: State, field: str, value: Any) -> None:
    state[field] = tuple(sorted({*state[field], value}))


def _remove(state: State, field: str, value: Any) -> None:
    state[field] = tuple(v for v in state[field] if v != value)


def _increment(state: State, field: str, value: Any) -> None:
    state[field] = (state[field] or 0) + (1 if value is None else value)


_OPERATIONS: dict[str, Callable[[State, str, Any], None]] = {
    "set": _set,
    "set_once": _set_once,
    "unset": _unset,
    "add": _add,
    "remove": _remove,
    "increment": _increment,
}
