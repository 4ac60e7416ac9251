"""Python source of a repository's event classes, for editors and type checkers.

The runtime builds its models when the schemas load (``labelstore.events.typed``); a module
written by ``render_module`` spells the same models out as classes an IDE can complete. Both come
from the same description of the schemas (``typed.describe``), so a generated class has the
runtime model's fields, types, constraints and defaults, and accepts and refuses the same events.
"""

from __future__ import annotations

import json
import keyword
import math
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any
from uuid import UUID

from labelstore.events.typed import (
    RESERVED_NAMES,
    EventSpec,
    FieldSpec,
    RecordSpec,
    TypeCatalog,
    TypeTree,
    describe,
    field_options,
    split_null,
)
from labelstore.schemas.catalog import SchemaSet
from labelstore.schemas.exceptions import SchemaError

HEADER = '''"""Event classes of a label repository, generated from its Avro schemas; do not edit.

Regenerate them after a schema changes. At runtime, ``labelstore.events.typed.EventTypes`` builds
the same models from the schemas themselves.
"""
# ruff: noqa

import datetime as _datetime
import uuid as _uuid
from typing import Annotated, Literal

from pydantic import Field

from labelstore.events.models import Date, Event, Int, Long, Record, TimestampMicros, TimestampMillis, Uuid'''

SOURCE_TYPES = {
    "string": "str", "int": "Int", "long": "Long", "float": "float", "double": "float", "boolean": "bool",
    "bytes": "bytes", "null": "None", "uuid": "Uuid", "date": "Date",
    "timestamp-millis": "TimestampMillis", "timestamp-micros": "TimestampMicros",
}
# A class attribute of one of these names would hide the type from the annotations after it.
_SHADOWING = {"str", "int", "float", "bool", "bytes", "list", "dict"} | RESERVED_NAMES


def render_module(schema_set: SchemaSet) -> str:
    """A module with one pydantic class per event type and per record, and ``EVENT_MODELS``."""
    catalog = describe(schema_set)
    classes = [_record(spec, catalog) for spec in catalog.records.values()]
    classes += [_event(spec, catalog) for spec in catalog.events.values()]
    registry = "".join(f"    {_value(name)}: {name},\n" for name in catalog.events)
    models = f"EVENT_MODELS: dict[str, type[Event]] = {{\n{registry}}}"
    return "\n\n\n".join([HEADER, *classes, models]) + "\n"


def _record(spec: RecordSpec, catalog: TypeCatalog) -> str:
    lines = [f"class {spec.class_name}(Record):"]
    if spec.doc:
        lines += _docstring(spec.doc)
    class_names = {record.class_name for record in catalog.records.values()}
    lines += [_field(spec.full_name, field, catalog, class_names) for field in spec.fields]
    if len(lines) == 1:
        lines.append("    pass")
    return "\n".join(lines)


def _event(spec: EventSpec, catalog: TypeCatalog) -> str:
    lines = [f"class {spec.event_type}(Event):"]
    if spec.doc:
        lines += _docstring(spec.doc)
    lines += [
        f"    entity_type: Literal[{_value(spec.entity_type)}] = {_value(spec.entity_type)}",
        f"    event_type: Literal[{_value(spec.event_type)}] = {_value(spec.event_type)}",
        f"    payload: {catalog.records[spec.payload].class_name}",
    ]
    return "\n".join(lines)


def _field(record: str, field: FieldSpec, catalog: TypeCatalog, class_names: set[str]) -> str:
    if keyword.iskeyword(field.name) or field.name in _SHADOWING | class_names:
        raise SchemaError(
            f"{record}.{field.name}: a generated class cannot have a field named {field.name!r}; "
            "rename the field, or use the runtime models (labelstore.events.typed.EventTypes)"
        )
    inner, nullable = split_null(field.type)
    annotation = "None" if inner is None else _type(inner, catalog)
    if field.constraints:
        annotation = f"Annotated[{annotation}, Field({_keywords(field.constraints)})]"
    if nullable and inner is not None:
        annotation += " | None"
    options = field_options(field)
    if not options:
        return f"    {field.name}: {annotation}"
    if set(options) == {"default"}:
        return f"    {field.name}: {annotation} = {_value(options['default'])}"
    return f"    {field.name}: {annotation} = Field({_keywords(options)})"


def _type(tree: TypeTree, catalog: TypeCatalog) -> str:
    if isinstance(tree, str):
        return SOURCE_TYPES[tree]
    kind, arg = tree
    if kind == "enum":
        return f"Literal[{', '.join(_value(symbol) for symbol in arg)}]"
    if kind == "fixed":
        return f"Annotated[bytes, Field(min_length={arg}, max_length={arg})]"
    if kind == "array":
        return f"list[{_type(arg, catalog)}]"
    if kind == "map":
        return f"dict[str, {_type(arg, catalog)}]"
    if kind == "record":
        return catalog.records[arg].class_name
    return " | ".join(_type(branch, catalog) for branch in arg)


def _keywords(options: Mapping[str, Any]) -> str:
    return ", ".join(f"{key}={_value(value)}" for key, value in options.items())


def _value(value: Any) -> str:
    """Source text that evaluates to ``value`` in the generated module."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"float({_value(str(value))})"
    if isinstance(value, UUID):
        return f"_uuid.UUID({_value(str(value))})"
    if isinstance(value, datetime):
        return f"_datetime.datetime.fromisoformat({_value(value.isoformat())})"
    if isinstance(value, date):
        return f"_datetime.date.fromisoformat({_value(value.isoformat())})"
    if isinstance(value, list):
        return f"[{', '.join(_value(item) for item in value)}]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_value(key)}: {_value(item)}" for key, item in value.items()) + "}"
    if isinstance(value, str):
        # JSON's escapes are valid in Python too; any text becomes one double-quoted literal.
        return json.dumps(value, ensure_ascii=False)
    if value is None or isinstance(value, (bool, int, float, bytes)):
        return repr(value)
    raise TypeError(f"no source form for {type(value).__name__} {value!r}")


def _docstring(text: str) -> list[str]:
    text = text.strip()
    plain = '"""' not in text and "\\" not in text and not text.endswith('"')
    return [f'    """{text}"""' if plain else f"    {_value(text)}", ""]

