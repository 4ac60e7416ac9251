"""Event models built from a repository's Avro schemas when they are loaded.

``describe`` reads a schema set into a description of its records (fields, types, constraints,
defaults); ``EventTypes`` turns that description into pydantic models, and
``labelstore.events.codegen`` writes the same description down as Python source, so both accept
and refuse the same events.

A model accepts what Avro accepts, strictly (a string is never coerced into a number), and refuses
in addition what a field's ``"labelstore.constraints"`` attribute rules out: Avro cannot say
"non-empty" or "in [0, 1]". Custom attributes are not part of Avro's parsing canonical form, so
adding a constraint leaves a schema's fingerprint unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal, Union
from uuid import UUID

from pydantic import Field, TypeAdapter, ValidationError, create_model

from labelstore.events.exceptions import InvalidEventError
from labelstore.events.models import Date, Event, Int, Long, Record, TimestampMicros, TimestampMillis, Uuid
from labelstore.events.wire import describe_validation_error
from labelstore.schemas.catalog import SchemaSet
from labelstore.schemas.exceptions import SchemaError

CONSTRAINTS_ATTRIBUTE = "labelstore.constraints"
_NUMBERS = {"int", "long", "float", "double"}
_SIZED = {"string", "bytes", "array", "map"}
CONSTRAINT_KINDS = {"min_length": _SIZED, "max_length": _SIZED, "pattern": {"string"},
                    "ge": _NUMBERS, "gt": _NUMBERS, "le": _NUMBERS, "lt": _NUMBERS}

PYTHON_TYPES: dict[str, Any] = {
    "string": str, "int": Int, "long": Long, "float": float, "double": float, "boolean": bool,
    "bytes": bytes, "null": None, "uuid": Uuid, "date": Date,
    "timestamp-millis": TimestampMillis, "timestamp-micros": TimestampMicros,
}
LOGICAL_TYPES = {("uuid", "string"), ("date", "int"), ("timestamp-millis", "long"), ("timestamp-micros", "long")}
# Names a generated module imports; a record's class never takes one of them.
RESERVED_NAMES = {"Annotated", "Literal", "Field", "Event", "Record", "EVENT_MODELS", "Int", "Long", "Uuid", "Date",
                  "TimestampMillis", "TimestampMicros"}
REQUIRED: Any = ...
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# A field's type, as a tree: an Avro primitive or supported logical type by name ("string",
# "timestamp-millis", ...), or ("enum", symbols), ("fixed", size), ("array", items),
# ("map", values), ("union", branches), ("record", full name).
TypeTree = str | tuple[str, Any]


@dataclass(frozen=True)
class FieldSpec:
    name: str
    type: TypeTree
    constraints: Mapping[str, Any]
    default: Any = REQUIRED  # already a Python value (bytes, datetime, ...), not Avro's JSON form
    doc: str | None = None


@dataclass(frozen=True)
class RecordSpec:
    full_name: str
    class_name: str
    doc: str | None
    fields: tuple[FieldSpec, ...]


@dataclass(frozen=True)
class EventSpec:
    event_type: str
    entity_type: str
    payload: str  # the payload record's full name
    doc: str | None


@dataclass(frozen=True)
class TypeCatalog:
    records: Mapping[str, RecordSpec]  # by full name; a record comes after the records it uses
    events: Mapping[str, EventSpec]  # by event type, sorted


def describe(schema_set: SchemaSet) -> TypeCatalog:
    """The records and event types of ``schema_set``'s current schemas."""
    reader = _SchemaReader()
    events = {}
    for event_type in sorted(schema_set.current):
        event = schema_set.current[event_type]
        payload = next(f["type"] for f in event.schema["fields"] if f["name"] == "payload")
        tree = reader.type_of(payload, event_type)
        events[event_type] = EventSpec(event_type, event.entity_type, tree[1], payload.get("doc"))
    names = _class_names(list(reader.records), {e.payload: e.event_type for e in events.values()})
    records = {full: RecordSpec(full, names[full], spec.doc, spec.fields) for full, spec in reader.records.items()}
    return TypeCatalog(records, events)


def split_null(tree: TypeTree) -> tuple[TypeTree | None, bool]:
    """(the type without ``null``, or None if nothing is left; whether ``null`` is allowed)."""
    if tree == "null":
        return None, True
    if not isinstance(tree, tuple) or tree[0] != "union" or "null" not in tree[1]:
        return tree, False
    rest = tuple(branch for branch in tree[1] if branch != "null")
    return (rest[0] if len(rest) == 1 else ("union", rest)) if rest else None, True


def field_options(field: FieldSpec) -> dict[str, Any]:
    """Keyword arguments of the field's ``Field(...)``: default and description."""
    options: dict[str, Any] = {}
    if field.default is not REQUIRED:
        options["default"] = field.default
        if field.default is not None and _holds_record(field.type):
            options["validate_default"] = True  # a record's default is written as a dict
    if field.doc:
        options["description"] = field.doc
    return options


class EventTypes:
    """The event models of a schema set: one ``Event`` subclass per current event type."""

    def __init__(self, schema_set: SchemaSet) -> None:
        self.schema_set = schema_set
        self.catalog = describe(schema_set)
        self.records: dict[str, type[Record]] = {}  # by the record's full name
        records = self.records
        for spec in self.catalog.records.values():
            fields = {f.name: _field_definition(spec.full_name, f, records) for f in spec.fields}
            records[spec.full_name] = create_model(
                spec.class_name, __base__=Record, __doc__=spec.doc, __module__=__name__, **fields)
        self._models: dict[str, type[Event]] = {
            e.event_type: create_model(
                e.event_type, __base__=Event, __doc__=e.doc, __module__=__name__,
                entity_type=(Literal[e.entity_type], e.entity_type),
                event_type=(Literal[e.event_type], e.event_type),
                payload=(records[e.payload], ...),
            )
            for e in self.catalog.events.values()
        }

    @property
    def names(self) -> list[str]:
        return sorted(self._models)

    def __contains__(self, event_type: object) -> bool:
        return event_type in self._models

    def model(self, event_type: str) -> type[Event]:
        try:
            return self._models[event_type]
        except (KeyError, TypeError):
            known = ", ".join(self.names)
            raise InvalidEventError(f"event_type: {event_type!r} is not an event type; known: {known}") from None

    def parse(self, data: Mapping[str, Any] | Event) -> Event:
        """Validate a mapping (a decoded record, a service's JSON) as the event its ``event_type`` names.

        An event of this set's models passes through; any other ``Event`` (a generated module's
        class, say) is checked again as its record."""
        if isinstance(data, Event):
            if type(data) is self._models.get(data.event_type):
                return data
            data = data.to_record()
        if not isinstance(data, Mapping):
            raise InvalidEventError(f"an event is a mapping or an Event, not {type(data).__name__}")
        event_type = data.get("event_type")
        return self._validate(event_type, self.model(event_type), data)

    def create(self, event_type: str, *, entity_id: str, event_time: datetime, payload: Mapping[str, Any] | Record,
               source: str = "sdk", event_id: UUID | str | None = None) -> Event:
        """A new, validated event; ``event_id`` defaults to a fresh UUID."""
        record = {"entity_id": entity_id, "event_time": event_time, "source": source, "payload": payload}
        if event_id is not None:
            record["event_id"] = event_id
        return self._validate(event_type, self.model(event_type), record)

    @staticmethod
    def _validate(event_type: str, model: type[Event], data: Mapping[str, Any]) -> Event:
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise InvalidEventError(describe_validation_error(event_type, exc)) from exc


def _holds_record(tree: TypeTree) -> bool:
    if isinstance(tree, str):
        return False
    kind, arg = tree
    if kind in ("array", "map"):
        return _holds_record(arg)
    return kind == "record" or (kind == "union" and any(_holds_record(branch) for branch in arg))


def python_type(tree: TypeTree, records: Mapping[str, type[Record]]) -> Any:
    if isinstance(tree, str):
        return PYTHON_TYPES[tree]
    kind, arg = tree
    if kind == "enum":
        return Literal[arg]
    if kind == "fixed":
        return Annotated[bytes, Field(min_length=arg, max_length=arg)]
    if kind == "array":
        return list[python_type(arg, records)]
    if kind == "map":
        return dict[str, python_type(arg, records)]
    if kind == "record":
        return records[arg]
    return Union[tuple(python_type(branch, records) for branch in arg)]  # noqa: UP007 - built from a tuple


def _field_definition(record: str, field: FieldSpec, records: Mapping[str, type[Record]]) -> tuple[Any, Any]:
    inner, nullable = split_null(field.type)
    annotation = None if inner is None else python_type(inner, records)
    if field.constraints:
        annotation = Annotated[annotation, Field(**field.constraints)]
    if nullable and inner is not None:
        annotation = annotation | None
    if field.default is not REQUIRED:
        # Checked now so that a wrong default fails when the schemas load, not at the first event.
        try:
            TypeAdapter(annotation).validate_python(field.default, strict=True)
        except ValidationError as exc:
            raise SchemaError(f"{record}.{field.name}: the default {field.default!r} is not valid: {exc}") from exc
    return annotation, Field(**field_options(field))


class _SchemaReader:
    """Walks expanded Avro schemas; builds each named type once, however many events share it."""

    def __init__(self) -> None:
        self.records: dict[str, RecordSpec] = {}
        self._named: dict[str, TypeTree] = {}
        self._outlines: dict[str, Any] = {}

    def type_of(self, avro: Any, where: str) -> TypeTree:
        if isinstance(avro, list):
            return "union", tuple(self.type_of(branch, where) for branch in avro)
        if isinstance(avro, str):
            if avro in PYTHON_TYPES:
                return avro
            if avro not in self._named:
                raise SchemaError(f"{where}: unknown type {avro!r}")
            if avro not in self.records and self._named[avro] == ("record", avro):
                raise SchemaError(f"{where}: record {avro} refers to itself; recursive records are not supported")
            return self._named[avro]
        kind, logical = avro["type"], avro.get("logicalType")
        if logical is not None:
            if (logical, kind) not in LOGICAL_TYPES:
                supported = ", ".join(f"{t} on {k}" for t, k in sorted(LOGICAL_TYPES))
                raise SchemaError(f"{where}: logical type {logical!r} on {kind!r} is not supported; supported: {supported}")
            return logical
        if kind == "array":
            return "array", self.type_of(avro["items"], where)
        if kind == "map":
            return "map", self.type_of(avro["values"], where)
        if kind in ("record", "error", "enum", "fixed"):
            return self._define(avro, where)
        return self.type_of(kind, where)

    def _define(self, avro: Mapping[str, Any], where: str) -> TypeTree:
        name, outline = avro["name"], _outline(avro)
        if name in self._outlines:
            if self._outlines[name] != outline:
                raise SchemaError(f"{where}: {name} is defined twice, differently")
            return self._named[name]
        self._outlines[name] = outline
        if avro["type"] == "enum":
            self._named[name] = ("enum", tuple(avro["symbols"]))
        elif avro["type"] == "fixed":
            self._named[name] = ("fixed", avro["size"])
        else:
            self._named[name] = ("record", name)  # before its fields, so a self-reference is caught
            fields = tuple(self._field(name, field) for field in avro["fields"])
            self.records[name] = RecordSpec(name, name, avro.get("doc"), fields)
        return self._named[name]

    def _field(self, record: str, avro: Mapping[str, Any]) -> FieldSpec:
        where = f"{record}.{avro['name']}"
        if avro["name"].startswith("_") or (avro["name"].startswith("model_") and hasattr(Record, avro["name"])):
            raise SchemaError(f"{where}: a field name cannot start with '_' or be a pydantic model attribute")
        tree = self.type_of(avro["type"], where)
        constraints = _constraints(where, tree, avro.get(CONSTRAINTS_ATTRIBUTE))
        default = self._default(tree, avro["default"]) if "default" in avro else REQUIRED
        return FieldSpec(avro["name"], tree, constraints, default, avro.get("doc"))

    def _default(self, tree: TypeTree, value: Any) -> Any:
        """Avro's JSON form of a default as the Python value a decoded record would hold."""
        kind = tree if isinstance(tree, str) else tree[0]
        if kind == "union":
            return self._default(tree[1][0], value)  # Avro: a union's default is of its first branch
        if value is None:
            return None
        converters = {
            "bytes": lambda: value.encode("latin-1"),  # Avro writes bytes as code points 0-255
            "fixed": lambda: value.encode("latin-1"),
            "uuid": lambda: UUID(value),
            "date": lambda: date(1970, 1, 1) + timedelta(days=value),
            "timestamp-millis": lambda: _EPOCH + timedelta(milliseconds=value),
            "timestamp-micros": lambda: _EPOCH + timedelta(microseconds=value),
            "array": lambda: [self._default(tree[1], item) for item in value],
            "map": lambda: {key: self._default(tree[1], item) for key, item in value.items()},
            "record": lambda: {
                f.name: self._default(f.type, value[f.name]) for f in self.records[tree[1]].fields if f.name in value
            },
        }
        return converters[kind]() if kind in converters else value


def _constraints(where: str, tree: TypeTree, raw: Any) -> dict[str, Any]:
    if raw is None:
        return {}
    allowed = ", ".join(CONSTRAINT_KINDS)
    if not isinstance(raw, Mapping):
        raise SchemaError(f'{where}: "{CONSTRAINTS_ATTRIBUTE}" must be an object with keys among {allowed}')
    unknown = sorted(set(raw) - set(CONSTRAINT_KINDS))
    if unknown:
        raise SchemaError(f'{where}: unknown key(s) {", ".join(unknown)} in "{CONSTRAINTS_ATTRIBUTE}"; allowed: {allowed}')
    inner, _ = split_null(tree)
    kind = inner if isinstance(inner, str) else inner[0] if inner else "null"
    for key, value in raw.items():
        if kind not in CONSTRAINT_KINDS[key]:
            raise SchemaError(f"{where}: constraint {key!r} does not apply to a field of type {kind}")
        if key == "pattern":
            valid = isinstance(value, str) and _compiles(value)
        else:
            numeric = (int,) if key.endswith("length") else (int, float)
            valid = isinstance(value, numeric) and not isinstance(value, bool) and not (key.endswith("length") and value < 0)
        if not valid:
            raise SchemaError(f"{where}: constraint {key!r} has an invalid value {value!r}")
    return dict(raw)


def _compiles(pattern: str) -> bool:
    try:
        re.compile(pattern)
    except re.error:
        return False
    return True


def _outline(avro: Any, top: bool = True) -> Any:
    """A named type's definition with the named types inside it reduced to their names.

    fastavro inlines a named type where it first occurs in each schema, so the same record can
    arrive once with a nested definition and once with a reference to it."""
    if isinstance(avro, list):
        return [_outline(item, False) for item in avro]
    if not isinstance(avro, dict):
        return avro
    if not top and avro.get("type") in ("record", "error", "enum", "fixed"):
        return avro["name"]
    return {key: _outline(value, False) for key, value in avro.items()}


def _class_names(records: list[str], payloads: Mapping[str, str]) -> dict[str, str]:
    """A class name per record: ``<EventType>Payload`` for a payload, else the record's short name,
    qualified by its namespace where two would clash (a generated module holds them all)."""
    names = {full: f"{event_type}Payload" for full, event_type in payloads.items()}
    taken = RESERVED_NAMES | set(payloads.values()) | set(names.values())
    shorts = [full.rpartition(".")[2] for full in records if full not in names]
    for full in records:
        if full in names:
            continue
        name = full.rpartition(".")[2]
        if shorts.count(name) > 1 or name in taken:
            name = "".join(part[:1].upper() + part[1:] for part in full.split("."))
        while name in taken:
            name += "_"
        names[full] = name
        taken.add(name)
    return names
