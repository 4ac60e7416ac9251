"""Check a rule before it runs: it parses, is one expression, reads only declared fields, calls only
deterministic scalar functions, touches no table, file or network, and returns the declared type.

DuckDB's own parser produces the syntax tree (``json_serialize_sql``) and its binder checks names
and types against an empty table shaped like the entity's state, so the rule is judged by the very
engine that will evaluate it. Every message says where in the expression the problem is.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import duckdb

from labelstore.declarations import EntityDeclaration
from labelstore.rules.exceptions import InvalidRuleError
from labelstore.rules.model import LabelRule
from labelstore.rules.sandbox import empty_state_table_sql, sandboxed_connection

PREFIX = "SELECT (\n"
SUFFIX = "\n) AS value"
ACCEPTED_TYPES = {
    "string": {"VARCHAR"},
    "boolean": {"BOOLEAN"},
    "long": {"BIGINT", "INTEGER", "SMALLINT", "TINYINT", "HUGEINT"},
    "double": {"DOUBLE", "FLOAT", "BIGINT", "INTEGER", "DECIMAL"},
}


def wrap(expression: str) -> str:
    # The newlines keep a trailing `-- comment` in the expression from swallowing the parenthesis.
    return f"{PREFIX}{expression}{SUFFIX}"


def validate_rule(rule: LabelRule, declaration: EntityDeclaration) -> list[str]:
    """The state fields the rule reads; raises ``InvalidRuleError`` if it cannot be used."""
    if rule.entity_type != declaration.entity_type:
        raise InvalidRuleError(f"{rule.key}: entity type {rule.entity_type!r} is not {declaration.entity_type!r}")
    connection = sandboxed_connection()
    tree = _syntax_tree(connection, rule)
    select = _single_select(rule, tree)
    fields = _check_nodes(connection, rule, declaration, select["select_list"][0])
    _check_binding_and_type(connection, rule, declaration)
    return fields


def _syntax_tree(connection: duckdb.DuckDBPyConnection, rule: LabelRule) -> dict[str, Any]:
    tree = json.loads(connection.execute("SELECT json_serialize_sql(?)", [wrap(rule.expression)]).fetchone()[0])
    if tree.get("error"):
        position = int(tree.get("position", -1))
        raise InvalidRuleError(_at(rule, position, f"syntax error: {tree.get('error_message')}"))
    return tree


def _single_select(rule: LabelRule, tree: dict[str, Any]) -> dict[str, Any]:
    statements = tree["statements"]
    node = statements[0]["node"] if len(statements) == 1 else {}
    clauses = ("modifiers", "where_clause", "group_expressions", "group_sets", "having", "sample", "qualify")
    if (
        node.get("type") != "SELECT_NODE"
        or len(node["select_list"]) != 1
        or node["from_table"].get("type") != "EMPTY"
        or node["cte_map"]["map"]
        or any(node.get(clause) for clause in clauses)
    ):
        raise InvalidRuleError(f"{rule.key}: a rule is one SQL expression, without FROM, clauses or more statements")
    return node


def _check_nodes(connection: duckdb.DuckDBPyConnection, rule: LabelRule, declaration: EntityDeclaration,
                 expression: dict[str, Any]) -> list[str]:
    unstable = _unstable_functions(connection)
    fields: list[str] = []
    for node in _walk(expression):
        kind, position = node.get("class"), int(node.get("query_location", -1))
        if kind == "SUBQUERY" or "subquery" in node or "from_table" in node:
            raise InvalidRuleError(_at(rule, position, "subqueries and table access are not allowed in a rule"))
        if kind == "WINDOW":
            raise InvalidRuleError(_at(rule, position, "window functions are not allowed: a rule sees one state"))
        if kind == "FUNCTION" and node["function_name"].lower() in unstable:
            raise InvalidRuleError(_at(rule, position, f"{node['function_name']}() is not allowed in a rule: "
                                                       "only deterministic scalar functions, the same label for the same state"))
        if kind == "COLUMN_REF":
            name = node["column_names"][-1]
            if len(node["column_names"]) > 1 or name not in declaration.fields:
                known = ", ".join(declaration.fields)
                raise InvalidRuleError(_at(rule, position, f"unknown field {'.'.join(node['column_names'])!r}; "
                                                           f"fields of {declaration.entity_type}: {known}"))
            fields.append(name)
    return sorted(set(fields))


def _check_binding_and_type(connection: duckdb.DuckDBPyConnection, rule: LabelRule, declaration: EntityDeclaration) -> None:
    connection.execute(empty_state_table_sql(declaration, "state"))
    try:
        described = connection.execute(f"DESCRIBE {wrap(rule.expression)} FROM state").fetchall()
    except duckdb.Error as exc:
        raise InvalidRuleError(f"{rule.key}: {_first_line(exc)}") from exc
    actual = described[0][1]
    base = actual.split("(")[0]
    if base != '"NULL"' and base not in ACCEPTED_TYPES[rule.value_type]:
        raise InvalidRuleError(f"{rule.key}: the expression returns {actual}, but the rule declares "
                               f"value_type {rule.value_type!r}")


def _unstable_functions(connection: duckdb.DuckDBPyConnection) -> set[str]:
    """Names all of whose overloads are volatile, side-effecting, or not scalar (aggregates, tables).

    A name with a deterministic scalar overload stays allowed: ``+`` has one overload that is only
    consistent within a query (time-zone arithmetic), which state fields never bind to.
    """
    rows = connection.execute(
        "SELECT lower(function_name) FROM duckdb_functions() GROUP BY 1 "
        "HAVING bool_and(function_type NOT IN ('scalar', 'macro') OR has_side_effects "
        "OR coalesce(stability IN ('VOLATILE', 'CONSISTENT_WITHIN_QUERY'), false))"
    ).fetchall()
    return {name for (name,) in rows} | {"getenv", "current_setting"}


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if "class" in node or "from_table" in node:
            yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)


def _at(rule: LabelRule, position: int, message: str) -> str:
    """The message, and the expression with a caret under the problem."""
    offset = position - len(PREFIX)
    lines = rule.expression.splitlines() or [""]
    if offset >= len(rule.expression.rstrip()):
        return f"{rule.key}: {message} (at the end of the expression: is something missing?)"
    if offset < 0:
        return f"{rule.key}: {message}"
    line_number = rule.expression[:offset].count("\n")
    column = offset - (rule.expression.rfind("\n", 0, offset) + 1)
    pointer = " " * column + "^"
    return f"{rule.key}: {message}\n  line {line_number + 1}, column {column + 1}:\n    {lines[line_number]}\n    {pointer}"


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0]
