"""A rule's DuckDB expression in Spark SQL (sqlglot), or a refusal that says what does not translate.

Rules are written for DuckDB, which evaluates them online; Spark must give the same label for
the same state. A translation is refused, never guessed, when:

1. sqlglot does not know a function (it would pass it through under its DuckDB name), or cannot
   express a construct in Spark (``unsupported_level=RAISE``);
2. Spark's analyzer rejects the translation against the state's columns (an argument of another
   type, e.g. DuckDB's ``len`` of a list becoming Spark's string ``LENGTH``);
3. the two engines disagree on a sample of the states' distinct inputs (``check_agreement``):
   a function that exists in both under one name but means something else.
"""

from __future__ import annotations

from labelstore.errors import LabelstoreError
from labelstore.rules.model import LabelRule

SPARK_SQL_TYPES = {"string": "STRING", "boolean": "BOOLEAN", "long": "BIGINT", "double": "DOUBLE"}


class UntranslatableRuleError(LabelstoreError):
    """A rule's expression has no faithful Spark SQL translation; evaluate it with DuckDB instead."""


def to_spark_sql(rule: LabelRule) -> str:
    """The rule's expression in Spark SQL, cast to the rule's value type, as DuckDB's evaluator does."""
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import ErrorLevel, ParseError, UnsupportedError

    try:
        tree = sqlglot.parse_one(rule.expression, read="duckdb")
    except ParseError as exc:
        raise _refusal(rule, f"sqlglot cannot parse it ({_first_line(exc)})") from exc
    unknown = sorted({node.name for node in tree.find_all(exp.Anonymous)})
    if unknown:
        raise _refusal(rule, f"{', '.join(f'{name}()' for name in unknown)}: no Spark equivalent known to the translator")
    try:
        translated = tree.sql(dialect="spark", unsupported_level=ErrorLevel.RAISE)
    except UnsupportedError as exc:
        raise _refusal(rule, f"a construct Spark cannot express: {_first_line(exc)}") from exc
    return f"CAST(({translated}) AS {SPARK_SQL_TYPES[rule.value_type]})"


def refusal_from_spark(rule: LabelRule, translated: str, exc: Exception) -> UntranslatableRuleError:
    """Spark's analyzer or parser rejected the translation: say so with Spark's own first line."""
    return _refusal(rule, f"Spark rejects its translation {translated!r}: {_first_line(exc)}")


def disagreement(rule: LabelRule, inputs: dict, duckdb_value: object, spark_value: object) -> UntranslatableRuleError:
    return _refusal(rule, f"DuckDB and Spark disagree on the state {inputs}: DuckDB {duckdb_value!r}, "
                          f"Spark {spark_value!r}")


def _refusal(rule: LabelRule, why: str) -> UntranslatableRuleError:
    expression = " ".join(rule.expression.split())
    return UntranslatableRuleError(f"{rule.key}: the expression `{expression}` does not translate to Spark SQL: {why}. "
                                   f"Backfill it with --engine duckdb, or write it with functions both engines share")


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
