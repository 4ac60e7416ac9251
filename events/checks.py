"""What a decoded record must pass beyond its Avro schema, checked at the cost of what can fail.

A record that fastavro decoded already has every field its reader schema names, each of its Avro
type: a string is a ``str``, a timestamp an aware ``datetime``, an enum one of its symbols. What the
event models of ``labelstore.events.typed`` refuse in addition is only this: a declared
``"labelstore.constraints"`` entry not met, an ``int`` wider than 32 bits (a varint can carry
64), or an empty ``entity_id`` or ``source``. Validating the whole model again cost the processor
18 us per event; ``DecodedChecks`` validates, with pydantic, a model of those fields alone, and
the caller lets the full model word a refusal, so the reasons stay those of ``EventTypes.parse``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import ConfigDict, Field, ValidationError, create_model

from labelstore.events.models import Int
from labelstore.events.typed import EventTypes, FieldSpec, TypeCatalog, TypeTree, python_type, split_null

_IGNORING_THE_REST = ConfigDict(extra="ignore", strict=True, frozen=True)
_NON_EMPTY = Annotated[str, Field(min_length=1)]


class DecodedChecks:
    def __init__(self, event_types: EventTypes) -> None:
        self.event_types = event_types
        self._narrowing = _Narrowing(event_types.catalog, event_types)
        self._models = {name: self._narrowing.event_model(spec.event_type, spec.payload)
                        for name, spec in event_types.catalog.events.items()}

    def passes(self, event_type: str, record: Mapping[str, Any]) -> bool:
        """Whether the event models accept a decoded record (lean or not: the fields checked are
        the same). For why not, ``EventTypes.parse`` the record as fastavro decodes it."""
        try:
            self._models[event_type].__pydantic_validator__.validate_python(record)
        except ValidationError:
            return False
        return True


class _Narrowing:
    """Models of the fields of each record that can fail on a decoded value, and nothing else."""

    def __init__(self, catalog: TypeCatalog, event_types: EventTypes) -> None:
        self.catalog = catalog
        self.full_records = event_types.records
        self._records: dict[str, Any] = {}

    def event_model(self, event_type: str, payload: str) -> Any:
        fields: dict[str, Any] = {"entity_id": (_NON_EMPTY, ...), "source": (_NON_EMPTY, ...)}
        payload_type = self.record(payload)
        if payload_type is not None:
            fields["payload"] = (payload_type, ...)
        return create_model(f"{event_type}Checks", __config__=_IGNORING_THE_REST, **fields)

    def record(self, full_name: str) -> Any | None:
        if full_name not in self._records:
            fields = {}
            for spec in self.catalog.records[full_name].fields:
                narrowed = self.field(spec)
                if narrowed is not None:
                    fields[spec.name] = (narrowed, ...)
            self._records[full_name] = (
                create_model(f"{full_name.rpartition('.')[2]}Checks", __config__=_IGNORING_THE_REST, **fields)
                if fields else None)
        return self._records[full_name]

    def field(self, spec: FieldSpec) -> Any | None:
        if not spec.constraints:
            return self.type(spec.type)
        inner, nullable = split_null(spec.type)
        annotation = Annotated[python_type(inner, self.full_records), Field(**spec.constraints)]
        return annotation | None if nullable else annotation

    def type(self, tree: TypeTree) -> Any | None:
        """The part of a type a decoded value can fail; None if it cannot fail."""
        if isinstance(tree, str):
            return Int if tree == "int" else None
        kind, arg = tree
        if kind in ("array", "map"):
            items = self.type(arg)
            if items is None:
                return None
            return list[items] if kind == "array" else dict[str, items]
        if kind == "record":
            return self.record(arg)
        if kind == "union":
            inner, nullable = split_null(tree)
            if inner is None or (isinstance(inner, tuple) and inner[0] == "union"):
                # Several branches: which one a value took is the model's to tell.
                return python_type(tree, self.full_records) if self._can_fail(tree) else None
            narrowed = self.type(inner)
            return narrowed | None if narrowed is not None and nullable else narrowed
        return None  # enum, fixed: Avro guarantees the symbol and the size

    def _can_fail(self, tree: TypeTree) -> bool:
        if isinstance(tree, str):
            return tree == "int"
        kind, arg = tree
        if kind == "union":
            return any(self._can_fail(branch) for branch in arg)
        if kind in ("array", "map"):
            return self._can_fail(arg)
        if kind == "record":
            return self.record(arg) is not None
        return False

