"""Evaluate an entity's label rules over many states at once, with DuckDB.

The processor hands over a micro-batch of changed states; the offline backfill hands over a whole
state history as an Arrow table. Both run the same SELECT on the same sandboxed engine.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from labelstore.declarations import EntityDeclaration
from labelstore.fold import State
from labelstore.rules.exceptions import InvalidRuleError
from labelstore.rules.model import LabelRule
from labelstore.rules.sandbox import ARROW_TYPES, sandboxed_connection
from labelstore.rules.validation import validate_rule


class RuleEvaluator:
    """Computes every rule of one entity type for a batch of states, in one query."""

    def __init__(self, declaration: EntityDeclaration, rules: Sequence[LabelRule], *, threads: int = 1) -> None:
        names = [rule.name for rule in rules]
        if len(set(names)) != len(names):
            raise InvalidRuleError(f"one version per label at a time, got {sorted(names)}")
        self.declaration = declaration
        self.rules = tuple(rules)
        read = sorted({field for rule in rules for field in validate_rule(rule, declaration)})
        # Only the fields some rule reads travel to DuckDB.
        self.fields = read or [next(iter(declaration.fields))]
        self._types = [ARROW_TYPES[declaration.fields[name].type] for name in self.fields]
        select = ", ".join(f'({rule.expression}\n) AS "{rule.name}"' for rule in rules) or "NULL AS none"
        self._sql = f"SELECT {select} FROM states"
        self._connection = sandboxed_connection(threads)

    def evaluate(self, states: Sequence[State]) -> list[tuple]:
        """One tuple of label values (in rule order) per state, in the order given."""
        if not states or not self.rules:
            return [()] * len(states)
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
