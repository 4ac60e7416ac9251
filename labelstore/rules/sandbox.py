"""The DuckDB side of rules: a sandboxed connection and the state fields' SQL and Arrow types.

Rules are evaluated by DuckDB online (micro-batches in the processor) and offline (whole state
histories), through this one module, so the two cannot differ in types or settings.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

from labelstore.declarations import EntityDeclaration

SQL_TYPES = {
    "string": "VARCHAR",
    "long": "BIGINT",
    "double": "DOUBLE",
    "boolean": "BOOLEAN",
    "timestamp": "TIMESTAMP",  # UTC; naive so no time-zone extension is needed
    "set<string>": "VARCHAR[]",
}
ARROW_TYPES = {
    "string": pa.string(),
    "long": pa.int64(),
    "double": pa.float64(),
    "boolean": pa.bool_(),
    "timestamp": pa.timestamp("ms"),
    "set<string>": pa.list_(pa.string()),
}


def sandboxed_connection(threads: int = 1) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB that cannot read files, reach the network or load extensions."""
    connection = duckdb.connect(":memory:")
    connection.execute(f"SET threads = {int(threads)}")
    connection.execute("SET enable_progress_bar = false")
    connection.execute("SET autoload_known_extensions = false")
    connection.execute("SET enable_external_access = false")
    connection.execute("SET lock_configuration = true")
    return connection


def arrow_schema(declaration: EntityDeclaration, fields: list[str] | None = None) -> pa.Schema:
    names = list(declaration.fields) if fields is None else fields
    return pa.schema([(name, ARROW_TYPES[declaration.fields[name].type]) for name in names])


def empty_state_table_sql(declaration: EntityDeclaration, table: str) -> str:
    columns = ", ".join(f'"{name}" {SQL_TYPES[spec.type]}' for name, spec in declaration.fields.items())
    return f'CREATE TEMP TABLE "{table}" ({columns})'
