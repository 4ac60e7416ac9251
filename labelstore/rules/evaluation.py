"""Evaluate an entity's label rules over many states at once, with DuckDB.

The processor hands over a micro-batch of changed states; the offline backfill hands over a whole
state history as an Arrow table. Both run the same SELECT on the same sandboxed engine.

A rule is a deterministic function of the fields it reads (validation allows nothing else), so an
evaluator may remember DuckDB's answer per distinct input (``cache_size``): a query's fixed cost
(binding an Arrow table, planning, ~1.5 ms) dwarfs its per-row cost, and label fields are mostly
categorical, so the processor's small batches rarely bring an input it has not seen. Every value
still comes from DuckDB; only the repeated questions are not asked again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pyarrow as pa

from labelstore.declarations import EntityDeclaration
from labelstore.fold import State
from labelstore.rules.exceptions import InvalidRuleError
from labelstore.rules.model import LabelRule
from labelstore.rules.sandbox import ARROW_TYPES, sandboxed_connection
from labelstore.rules.validation import validate_rule


SQL_TYPES = {"string": "VARCHAR", "boolean": "BOOLEAN", "long": "BIGINT", "double": "DOUBLE"}


class RuleEvaluator:
    """Computes every rule of one entity type for a batch of states, in one query."""

    def __init__(self, declaration: EntityDeclaration, rules: Sequence[LabelRule], *, threads: int = 1,
                 cache_size: int = 0) -> None:
        names = [rule.name for rule in rules]
        if len(set(names)) != len(names):
            raise InvalidRuleError(f"one version per label at a time, got {sorted(names)}")
        self.declaration = declaration
        self.rules = tuple(rules)
        read = sorted({field for rule in rules for field in validate_rule(rule, declaration)})
        # Only the fields some rule reads travel to DuckDB.
        self.fields = read or [next(iter(declaration.fields))]
        self._types = [ARROW_TYPES[declaration.fields[name].type] for name in self.fields]
        # Cast to the declared type: a double rule may compute a DECIMAL, which must not become
        # a label value of another Python type than the double it is.
        select = ", ".join(f'CAST(({rule.expression}\n) AS {SQL_TYPES[rule.value_type]}) AS "{rule.name}"'
                           for rule in rules) or "NULL AS none"
        self._sql = f"SELECT {select} FROM states"
        self._connection = sandboxed_connection(threads)
        self.cache_size = cache_size
        self._cache: dict[tuple, tuple] = {}  # the read fields' values -> the rules' values
        self._key = _input_key(self.fields, [declaration.fields[name].type for name in self.fields])

    def evaluate(self, states: Sequence[State]) -> list[tuple]:
        """One tuple of label values (in rule order) per state, in the order given."""
        if not states or not self.rules:
            return [()] * len(states)
        if not self.cache_size:
            return self._query(states)
        cache, key_of = self._cache, self._key
        keys = [key_of(state) for state in states]
        unseen = {key: state for key, state in zip(keys, states, strict=True) if key not in cache}
        if not unseen:
            return [cache[key] for key in keys]
        if len(cache) + len(unseen) > self.cache_size:  # start afresh, keeping this batch's inputs
            cache = self._cache = {key: cache[key] for key in keys if key in cache}
        cache.update(zip(unseen, self._query(list(unseen.values())), strict=True))
        return [cache[key] for key in keys]

    def _query(self, states: Sequence[State]) -> list[tuple]:
        columns = [pa.array([state[name] for state in states], type=kind) for name, kind in zip(self.fields, self._types)]
        return self._run(pa.Table.from_arrays(columns, names=self.fields))

    def evaluate_table(self, states: pa.Table) -> pa.Table:
        """Label columns for an Arrow table that has (at least) the fields the rules read."""
        self._connection.register("states", states)
        try:
            return self._connection.sql(self._sql).to_arrow_table()
        finally:
            self._connection.unregister("states")

    def _run(self, table: pa.Table) -> list[tuple]:
        self._connection.register("states", table)
        try:
            return self._connection.execute(self._sql).fetchall()
        finally:
            self._connection.unregister("states")


def _input_key(fields: Sequence[str], types: Sequence[str]) -> Callable[[State], tuple]:
    """A hashable key of a state's read fields that tells apart what DuckDB tells apart: stored
    states hold set-valued fields as lists, and 0.0 == -0.0 in Python (a double keys by its bits)."""
    converters = {"set<string>": "as_tuple", "double": "bits"}
    # One expression, not a loop over the fields: it runs for every state the processor evaluates.
    parts = [f"{converters[kind]}(state[{name!r}])" if kind in converters else f"state[{name!r}]"
             for name, kind in zip(fields, types, strict=True)]
    return eval(f"lambda state: ({', '.join(parts)},)", {"as_tuple": _as_tuple, "bits": _bits})  # noqa: S307 - names enter as repr()


def _as_tuple(value: Any) -> tuple | None:
    return None if value is None else tuple(value)


def _bits(value: Any) -> str | None:
    return None if value is None else float(value).hex()
