"""What a decoded record must pass beyond its Avro schema, checked at the cost of what can fail.

A record that fastavro decoded already has every field its reader schema names, each of its Avro
type: a string is a ``str``, a timestamp an aware ``datetime``, an enum one of its symbols. What the
event models of ``labelstore.events.typed`` refuse in addition is only this: a declared
``"labelstore.constraints"`` entry not met, an ``int`` wider than 32 bits (a varint can carry
64), or an empty ``entity_id`` or ``source``. Validating the whole model again cost the processor
18 us an event, and a model of those fields alone 5 us; ``DecodedChecks`` compiles them into one
function per event type (none but the envelope's for most), and the caller lets the full model
word a refusal, so the reasons stay those of ``EventTypes.parse``.

A check may only err on the side of refusing: the full model then has the last word (see
``labelstore.intake.admit``). Patterns, and unions of several types, are matched by pydantic
itself (its regular expressions are not Python's).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any

from pydantic import Field, TypeAdapter, ValidationError

from labelstore.events.typed import EventTypes, FieldSpec, TypeCatalog, TypeTree, python_type, split_null
from labelstore.schemas.compiled import Source

_COMPARISONS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}


class DecodedChecks:
    def __init__(self, event_types: EventTypes) -> None:
        self.event_types = event_types
        self.sources: dict[str, str] = {}  # event type -> the source of its check, to read
        self._checks: dict[str, Callable[[Mapping[str, Any]], bool]] = {}
        for name, spec in event_types.catalog.events.items():
            source = _CheckSource(event_types.catalog, event_types.records)
            self.sources[name], self._checks[name] = source.build(name, spec.payload)

    def passes(self, event_type: str, record: Mapping[str, Any]) -> bool:
        """Whether the event models accept a decoded record (lean or not: the fields checked are
        the same). For why not, ``EventTypes.parse`` the record as fastavro decodes it."""
        return self._checks[event_type](record)


def _validates(annotation: Any) -> Callable[[Any], bool]:
    validate = TypeAdapter(annotation).validate_python

    def check(value: Any) -> bool:
        try:
            validate(value, strict=True)
        except ValidationError:
            return False
        return True

    return check


class _CheckSource:
    def __init__(self, catalog: TypeCatalog, records: Mapping[str, Any]) -> None:
        self.catalog, self.records = catalog, records
        self.source = Source()

    def build(self, event_type: str, payload: str) -> tuple[str, Callable[[Mapping[str, Any]], bool]]:
        self.source.add(1, "if not record['entity_id'] or not record['source']:", "    return False")
        if self._can_fail(("record", payload)):
            self.source.add(1, "value = record['payload']")
            self._record(payload, "value", 1)
        passes = self.source.build("def compiled(record):", ["    return True"], f"checks of {event_type}", {})
        return self.source.text, passes

    def _name(self) -> str:
        return self.source.name("v")

    def _constant(self, value: Any) -> str:
        return self.source.constant(value)

    def _add(self, depth: int, *lines: str) -> None:
        self.source.add(depth, *lines)

    def _refuse_if(self, depth: int, condition: str) -> None:
        self._add(depth, f"if {condition}:", "    return False")

    def _record(self, full_name: str, value: str, depth: int) -> None:
        for field in self.catalog.records[full_name].fields:
            if field.constraints or self._can_fail(field.type):
                item = self._name()
                self._add(depth, f"{item} = {value}[{field.name!r}]")
                self._field(field, item, depth)

    def _field(self, field: FieldSpec, value: str, depth: int) -> None:
        inner, nullable = split_null(field.type)
        if nullable:
            self._add(depth, f"if {value} is not None:")
            depth += 1
        for kind, bound in field.constraints.items():
            if kind == "min_length":
                self._refuse_if(depth, f"len({value}) < {int(bound)}")
            elif kind == "max_length":
                self._refuse_if(depth, f"len({value}) > {int(bound)}")
            elif kind == "pattern":
                matches = _validates(Annotated[str, Field(pattern=bound)])
                self._refuse_if(depth, f"not {self._constant(matches)}({value})")
            else:  # written so that a NaN is refused, as pydantic refuses it
                self._refuse_if(depth, f"not {value} {_COMPARISONS[kind]} {self._constant(bound)}")
        if inner is not None and self._can_fail(inner):
            self._type(inner, value, depth)

    def _type(self, tree: TypeTree, value: str, depth: int) -> None:
        if tree == "int":
            self._refuse_if(depth, f"not -2147483648 <= {value} <= 2147483647")
            return
        kind, arg = tree
        if kind == "record":
            self._record(arg, value, depth)
        elif kind in ("array", "map"):
            item = self._name()
            self._add(depth, f"for {item} in {value}{'.values()' if kind == 'map' else ''}:")
            self._type(arg, item, depth + 1)
        elif kind == "union":
            inner, nullable = split_null(tree)
            if isinstance(inner, tuple) and inner[0] == "union":  # which branch a value took is pydantic's call
                valid = _validates(python_type(tree, self.records))
                self._refuse_if(depth, f"not {self._constant(valid)}({value})")
            else:
                self._add(depth, f"if {value} is not None:")
                self._type(inner, value, depth + 1)

    def _can_fail(self, tree: TypeTree) -> bool:
        """Whether a decoded value of this type can be one the event models refuse."""
        if isinstance(tree, str):
            return tree == "int"
        kind, arg = tree
        if kind in ("array", "map"):
            return self._can_fail(arg)
        if kind == "record":
            return any(f.constraints or self._can_fail(f.type) for f in self.catalog.records[arg].fields)
        if kind == "union":
            return any(self._can_fail(branch) for branch in arg if branch != "null")
        return False  # enum, fixed: Avro guarantees the symbol and the size
