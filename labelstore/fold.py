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
Step = Callable[[State, Mapping[str, Any]], None]  # updates the state in place


class UnfoldableEventError(LabelstoreError):
    """The entity's declaration has no operations for this event type."""


class EntityFold:
    """Applies an entity declaration's operations, compiled once into one function per event type."""

    def __init__(self, declaration: EntityDeclaration) -> None:
        self.declaration = declaration
        self._width = len(declaration.fields)
        self._steps: dict[str, Step] = {
            event_type: _compile(event_type, declaration.operations(event_type), declaration)
            for event_type in declaration.events
        }

    def initial_state(self) -> State:
        return self.declaration.initial_state()

    def apply(self, state: State | None, event_type: str, record: Mapping[str, Any]) -> State:
        """The state after one event; ``state`` itself is left unchanged."""
        try:
            step = self._steps[event_type]
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
        step(new_state, record)
        return new_state

    def states(self, events: Iterable[tuple[str, Mapping[str, Any]]], state: State | None = None) -> list[State]:
        """Every state along a sequence of (event_type, record) of one entity, in order."""
        history = []
        for event_type, record in events:
            state = self.apply(state, event_type, record)
            history.append(state)
        return history


# The operations of an event type become the body of one Python function (``_compile``): called
# per event, a chain of small closures (read a path, check a guard, apply) cost 1.5 us per
# operation. Field names, paths and constants enter the source only as ``repr`` of strings or as
# indexes into a tuple of constants, so no declaration can change what the code does.
_OPERATION_SOURCE = {
    "set": ["s[FIELD] = v"],
    "set_once": ["if s[FIELD] is None:", "    s[FIELD] = v"],
    "unset": ["s[FIELD] = () if isinstance(s[FIELD], (tuple, list)) else None"],
    "add": ["s[FIELD] = tuple(sorted({*s[FIELD], v}))"],
    "remove": ["s[FIELD] = tuple([x for x in s[FIELD] if x != v])"],
    "increment": ["s[FIELD] = (s[FIELD] or 0) + (1 if v is None else v)"],
}


def _compile(event_type: str, operations: Iterable[FieldOperation], declaration: EntityDeclaration) -> Step:
    constants: list[Any] = []
    lines = ["def step(s, r):"]
    for operation in operations:
        body: list[str] = []
        if operation.source is not None:
            body += _read_path("v", operation.source)
            if declaration.fields[operation.field].type == "timestamp":
                body += ["if v is not None:", "    v = to_epoch_ms(v)"]
        else:
            constants.append(operation.value)
            body.append(f"v = constants[{len(constants) - 1}]")
        apply = [line.replace("FIELD", repr(operation.field)) for line in _OPERATION_SOURCE[operation.op]]
        body += ["if v is not None:", *_indent(apply)] if operation.if_present else apply
        if operation.when_present is not None:
            body = [*_read_path("g", operation.when_present), "if g is not None:", *_indent(body)]
        lines += _indent(body)
    lines.append("    return None")
    namespace: dict[str, Any] = {"constants": tuple(constants), "to_epoch_ms": to_epoch_ms}
    exec(compile("\n".join(lines), f"<fold of {declaration.entity_type} {event_type}>", "exec"), namespace)  # noqa: S102
    return namespace["step"]


def _read_path(name: str, path: str) -> list[str]:
    """Source that sets ``name`` to the value at a dotted path of the record ``r``, None past a null."""
    first, *rest = path.split(".")
    lines, depth = [f"{name} = r[{first!r}]"], ""
    for part in rest:
        lines += [f"{depth}if {name} is not None:", f"{depth}    {name} = {name}[{part!r}]"]
        depth += "    "
    return lines


def _indent(lines: list[str]) -> list[str]:
    return ["    " + line for line in lines]


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MILLISECOND = timedelta(milliseconds=1)


def to_epoch_ms(value: datetime | int) -> int:
    """Epoch milliseconds (UTC) of an Avro timestamp-millis value, as fastavro returns it."""
    # Integer arithmetic: float timestamps can land a millisecond off.
    return value if isinstance(value, int) else (value - EPOCH) // MILLISECOND
