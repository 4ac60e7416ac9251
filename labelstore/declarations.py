"""Entity declarations: an entity's state fields and, per event type, the operations on them.

A declaration is data (a repository's ``entities/<entity_type>.yaml``), not code, so the online fold and
the offline re-fold execute the very same description. Loading checks it against the event
schemas: every event type exists for the entity, every field is declared, every operation fits its
field's type and every ``from`` path exists in the event with a type the field can hold.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from labelstore.errors import LabelstoreError
from labelstore.yamlfiles import parse_yaml_model

FieldType = Literal["string", "long", "double", "boolean", "timestamp", "set<string>"]
Operation = Literal["set", "set_once", "unset", "add", "remove", "increment"]
SCALAR_TYPES = {"string", "long", "double", "boolean", "timestamp"}
OPERATIONS_BY_TYPE: dict[str, set[str]] = {
    **{t: {"set", "set_once", "unset"} for t in SCALAR_TYPES},
    "long": {"set", "set_once", "unset", "increment"},
    "set<string>": {"add", "remove", "unset"},
}
# Which Avro types a field of each type may be set from.
AVRO_SOURCES: dict[str, set[str]] = {
    "string": {"string", "enum", "uuid"},
    "long": {"long", "int"},
    "double": {"double", "float", "long", "int"},
    "boolean": {"boolean"},
    "timestamp": {"timestamp-millis", "timestamp-micros"},
    "set<string>": {"string", "enum"},
}


class DeclarationError(LabelstoreError):
    """A declaration is malformed or does not fit the event schemas; the message says where."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class FieldSpec(_Frozen):
    type: FieldType
    default: str | int | float | bool | None = None


class FieldOperation(_Frozen):
    op: Operation
    field: str
    source: str | None = Field(default=None, alias="from", description="path into the event record")
    value: str | int | float | bool | None = Field(default=None, description="a constant instead of a path")
    if_present: bool = Field(default=False, description="leave the field as it is when the source is null")
    when_present: str | None = Field(default=None, description="apply only when this path is not null")

    @model_validator(mode="after")
    def _operand(self) -> FieldOperation:
        has_operand = self.source is not None or self.value is not None
        if self.source is not None and self.value is not None:
            raise ValueError("give either `from` or `value`, not both")
        if self.op in {"set", "set_once", "add", "remove"} and not has_operand:
            raise ValueError(f"`{self.op}` needs `from` (a path) or `value`")
        if self.op == "unset" and has_operand:
            raise ValueError("`unset` takes no `from` or `value`")
        return self


class EntityDeclaration(_Frozen):
    entity_type: str
    fields: dict[str, FieldSpec]
    events: dict[str, tuple[FieldOperation, ...]]
    every_event: tuple[FieldOperation, ...] = ()

    @field_validator("fields", mode="before")
    @classmethod
    def _short_field_specs(cls, fields: Any) -> Any:
        if isinstance(fields, Mapping):
            return {name: {"type": spec} if isinstance(spec, str) else spec for name, spec in fields.items()}
        return fields

    def operations(self, event_type: str) -> tuple[FieldOperation, ...]:
        """The event type's own operations, then those every event performs."""
        return (*self.events[event_type], *self.every_event)

    def initial_state(self) -> dict[str, Any]:
        return {
            name: (() if spec.type == "set<string>" else spec.default) for name, spec in self.fields.items()
        }


def load_declarations(directory: Path | None = None, schema_set: Any = None) -> dict[str, EntityDeclaration]:
    """Every ``*.yaml`` declaration in ``directory``, checked against the event schemas.

    Without arguments: the declarations of the current label repository."""
    if directory is None:
        from labelstore.repository import current

        return current().declarations
    declarations = {}
    for path in sorted(directory.glob("*.yaml")):
        origin = f"{directory.name}/{path.name}"
        declaration = parse_declaration(path.read_text(), origin=origin)
        if declaration.entity_type != path.stem:
            raise DeclarationError(f"{origin}: declares entity_type {declaration.entity_type!r}; "
                                   f"name the file {declaration.entity_type}.yaml")
        check_against_schemas(declaration, schema_set, origin=origin)
        declarations[declaration.entity_type] = declaration
    return declarations


def parse_declaration(text: str, *, origin: str = "<declaration>") -> EntityDeclaration:
    return parse_yaml_model(EntityDeclaration, text, origin=origin, error=DeclarationError)


def check_against_schemas(declaration: EntityDeclaration, schema_set: Any, *, origin: str) -> None:
    problems = []
    for event_type, operations in declaration.events.items():
        schema = schema_set.current.get(event_type)
        if schema is None or schema.entity_type != declaration.entity_type:
            problems.append(f"events.{event_type}: not an event type of entity {declaration.entity_type!r}")
            continue
        all_operations = [(f"events.{event_type}[{i}]", op) for i, op in enumerate(operations)]
        all_operations += [(f"every_event[{i}] (for {event_type})", op) for i, op in enumerate(declaration.every_event)]
        for where, operation in all_operations:
            problems += [f"{where}: {p}" for p in _operation_problems(declaration, operation, schema.schema)]
    if problems:
        raise DeclarationError(f"{origin}:\n  " + "\n  ".join(dict.fromkeys(problems)))


def _operation_problems(declaration: EntityDeclaration, operation: FieldOperation, event_schema: Mapping) -> list[str]:
    spec = declaration.fields.get(operation.field)
    if spec is None:
        return [f"field {operation.field!r} is not declared; declared: {', '.join(declaration.fields)}"]
    problems = []
    if operation.op not in OPERATIONS_BY_TYPE[spec.type]:
        allowed = ", ".join(sorted(OPERATIONS_BY_TYPE[spec.type]))
        problems.append(f"`{operation.op}` does not apply to {operation.field} ({spec.type}); use one of {allowed}")
    for path in filter(None, (operation.source, operation.when_present)):
        avro_type = avro_type_at(event_schema, path)
        if avro_type is None:
            problems.append(f"path {path!r} does not exist in the event")
        elif path == operation.source and avro_type not in AVRO_SOURCES[spec.type]:
            problems.append(f"path {path!r} is Avro {avro_type}; field {operation.field} ({spec.type}) cannot hold it")
    return problems


def avro_type_at(schema: Mapping, path: str) -> str | None:
    """The Avro type (logical type if any) at a dotted path of a record schema; None if absent."""
    current: Any = schema
    for part in path.split("."):
        current = _non_null(current)
        if not isinstance(current, Mapping) or current.get("type") != "record":
            return None
        field = next((f for f in current["fields"] if f["name"] == part), None)
        if field is None:
            return None
        current = field["type"]
    current = _non_null(current)
    if isinstance(current, Mapping):
        return current.get("logicalType") or current["type"]
    return current


def _non_null(avro_type: Any) -> Any:
    if isinstance(avro_type, list):
        branches = [t for t in avro_type if t != "null"]
        return branches[0] if len(branches) == 1 else avro_type
    return avro_type
