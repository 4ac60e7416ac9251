"""``DecodedChecks`` for records decoded into columns (``labelstore.schemas.columnar``).

The same checks, a batch at a time: non-empty ``entity_id`` and ``source``, 32-bit ``int``
values, and the declared constraints. Lengths are counted in characters, as ``len`` counts them;
a comparison is written so that a NaN fails it, as pydantic refuses NaN. A pattern is matched by
pydantic itself (``checks._validates``), once per distinct value. A record that fails goes to the
one-by-one admission, which words the refusal.
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from labelstore.events.checks import _validates
from labelstore.events.typed import TypeCatalog, split_null
from labelstore.schemas.columnar import Column
from labelstore.schemas.compiled import Unsupported

_COMPARE = {"ge": np.greater_equal, "gt": np.greater, "le": np.less_equal, "lt": np.less}


class ColumnChecks:
    def __init__(self, catalog: TypeCatalog) -> None:
        self.catalog = catalog
        self._patterns: dict[str, Any] = {}

    def failing(self, event_type: str, record: Column, buffer: np.ndarray) -> np.ndarray:
        """Which records of a decoded batch the event models would refuse."""
        failed = np.zeros(len(record.fields["entity_id"].lengths), dtype=bool)
        failed |= record.fields["entity_id"].lengths == 0
        failed |= record.fields["source"].lengths == 0
        payload = self.catalog.events[event_type].payload
        self._record(payload, record.fields["payload"], buffer, failed, None)
        return failed

    def _record(self, full_name: str, column: Column, buffer: np.ndarray, failed: np.ndarray,
                present: np.ndarray | None) -> None:
        present = _and(present, column.valid)
        for spec in self.catalog.records[full_name].fields:
            inner_column = column.fields[spec.name]
            inner, _ = split_null(spec.type)
            where = _and(present, inner_column.valid)
            for kind, bound in spec.constraints.items():
                refused = self._refused(kind, bound, inner_column, buffer)
                failed |= refused if where is None else refused & where
            self._type(inner, inner_column, buffer, failed, present)

    def _type(self, tree: Any, column: Column, buffer: np.ndarray, failed: np.ndarray,
              present: np.ndarray | None) -> None:
        where = _and(present, column.valid)
        if tree == "int":
            refused = (column.values < -(2**31)) | (column.values > 2**31 - 1)
            failed |= refused if where is None else refused & where
        elif isinstance(tree, tuple) and tree[0] == "record":
            self._record(tree[1], column, buffer, failed, present)

    def _refused(self, kind: str, bound: Any, column: Column, buffer: np.ndarray) -> np.ndarray:
        if kind in ("min_length", "max_length"):
            if column.kind != "string":
                raise Unsupported(f"{kind} on a {column.avro}")
            length = pc.utf8_length(column.strings(buffer)).to_numpy(zero_copy_only=False)
            return length < int(bound) if kind == "min_length" else length > int(bound)
        if kind == "pattern":
            if column.kind != "string":
                raise Unsupported(f"a pattern on a {column.avro}")
            text = column.strings(buffer)
            matches = self._patterns.get(bound)
            if matches is None:
                matches = self._patterns[bound] = _validates(Annotated[str, Field(pattern=bound)])
            passing = pa.array([value for value in pc.unique(text).to_pylist() if matches(value)], text.type)
            return ~pc.is_in(text, value_set=passing).to_numpy(zero_copy_only=False)
        if kind in _COMPARE:
            if column.values is None or column.kind not in ("long", "double"):
                raise Unsupported(f"{kind} on a {column.avro}")
            return ~_COMPARE[kind](column.values, bound)
        raise Unsupported(f"constraint {kind!r}")


def _and(mask: np.ndarray | None, other: np.ndarray | None) -> np.ndarray | None:
    if mask is None:
        return other
    return mask if other is None else mask & other
