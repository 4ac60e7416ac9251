"""Label rules: refused with a useful message when they cannot be used, evaluated by DuckDB."""

from __future__ import annotations

import pyarrow as pa
import pytest

from labelstore.declarations import load_declarations
from labelstore.rules.evaluation import RuleEvaluator
from labelstore.rules.exceptions import InvalidRuleError
from labelstore.rules.model import LabelRule, load_rules, parse_rule
from labelstore.rules.validation import validate_rule

ORDER = load_declarations()["order"]


def rule(expression: str, value_type: str = "string") -> LabelRule:
    return LabelRule(name="candidate", version=1, entity_type="order", expression=expression, value_type=value_type)


def test_shipped_rules_validate_and_read_only_what_they_need():
    declarations = load_declarations()
    reads = {r.name: validate_rule(r, declarations[r.entity_type]) for r in load_rules()}
    assert reads == {"fraud": ["classification", "tags"], "manual_review": ["review_decision"],
                     "misinformation": ["report_reasons", "reports", "verdict"]}


@pytest.mark.parametrize(
    ("expression", "value_type", "message"),
    [
        ("CASE WHEN clasification = 'FRAUD' THEN 'positive' END", "string",
         r"(?s)unknown field .clasification.*line 1, column 11"),
        ("CASE WHEN classification = 'FRAUD' THEN 'positive'", "string", "syntax error.*end of the expression"),
        ("classification = 'FRAUD'", "string", "returns BOOLEAN, but the rule declares value_type 'string'"),
        ("(SELECT max(x) FROM range(3) t(x))::VARCHAR", "string", "subqueries and table access are not allowed"),
        ("list_contains((SELECT list(column0) FROM read_csv('/etc/passwd')), 'x')::VARCHAR", "string",
         "subqueries and table access"),
        ("CASE WHEN random() < 0.5 THEN 'positive' END", "string", r"random\(\) is not allowed"),
        ("CASE WHEN now() > last_event_time THEN 'late' END", "string", r"now\(\) is not allowed"),
        ("max(model_score) > 0.5", "boolean", r"max\(\) is not allowed"),
        ("getenv('HOME')", "string", r"getenv\(\) is not allowed"),
        ("'x'; DROP TABLE states", "string", "syntax error"),
        ("classification + 1", "string", "Binder Error"),
    ],
)
def test_invalid_rules_are_refused_with_the_reason(expression, value_type, message):
    with pytest.raises(InvalidRuleError, match=message):
        validate_rule(rule(expression, value_type), ORDER)


def test_rule_files_are_checked():
    with pytest.raises(InvalidRuleError, match="version: Input should be greater than or equal to 1"):
        parse_rule("name: fraud\nversion: 0\nentity_type: order\nexpression: \"'x'\"")


def test_evaluation_in_one_batch():
    fraud = next(r for r in load_rules() if r.name == "fraud")
    states = [
        {**ORDER.initial_state(), "classification": None},
        {**ORDER.initial_state(), "classification": "FRAUD"},
        {**ORDER.initial_state(), "classification": "NOT_FRAUD"},
        {**ORDER.initial_state(), "classification": "NOT_FRAUD", "tags": ("false-negative", "vip")},
        {**ORDER.initial_state(), "classification": "NOT_FRAUD", "tags": ["false-positive"]},
    ]
    assert RuleEvaluator(ORDER, [fraud]).evaluate(states) == [(None,), ("positive",), ("negative",), ("positive",),
                                                               ("negative",)]


def test_a_trailing_comment_cannot_swallow_the_query():
    assert RuleEvaluator(ORDER, [rule("classification -- the model's verdict")]).evaluate(
        [{**ORDER.initial_state(), "classification": "FRAUD"}]) == [("FRAUD",)]


def test_values_are_of_the_declared_type_whatever_the_expression_computes():
    # 0.5 is a DECIMAL to DuckDB, chargebacks an integer: a double rule gives floats online and
    # offline alike, and a version's value keeps one Python type.
    decimal, integer = rule("CASE WHEN chargebacks > 0 THEN 0.5 END", "double"), rule("chargebacks", "double")
    states = [{**ORDER.initial_state(), "chargebacks": count} for count in (0, 2)]
    assert RuleEvaluator(ORDER, [decimal]).evaluate(states) == [(None,), (0.5,)]
    assert all(type(value) is float for (value,) in RuleEvaluator(ORDER, [integer]).evaluate(states))
    table = RuleEvaluator(ORDER, [decimal]).evaluate_table(pa.table({"chargebacks": pa.array([0, 2], pa.int64())}))
    assert table.schema.field("candidate").type == pa.float64()


def test_arithmetic_and_comparisons_are_allowed():
    candidate = rule("chargebacks + address_changes > 1 AND amount_cents / 100 >= 50", "boolean")
    assert validate_rule(candidate, ORDER) == ["address_changes", "amount_cents", "chargebacks"]


def test_a_remembering_evaluator_asks_duckdb_only_about_inputs_it_has_not_seen(monkeypatch):
    fraud = next(r for r in load_rules() if r.name == "fraud")
    remembering, plain = RuleEvaluator(ORDER, [fraud], cache_size=100), RuleEvaluator(ORDER, [fraud])
    queried: list[int] = []
    run = remembering._run
    monkeypatch.setattr(remembering, "_run", lambda table: queried.append(table.num_rows) or run(table))
    base = ORDER.initial_state()
    first = [{**base, "classification": c, "tags": t, "amount_cents": n}  # amount_cents is not read
             for n, (c, t) in enumerate([("FRAUD", ()), ("NOT_FRAUD", ("false-negative",)), ("NOT_FRAUD", ()),
                                         ("FRAUD", ()), (None, ())])]
    # Stored states hold set-valued fields as lists: the same input as the tuple.
    second = [{**base, "classification": "NOT_FRAUD", "tags": ["false-negative"]},
              {**base, "classification": "NOT_FRAUD", "tags": ["false-negative", "vip"]}]
    assert remembering.evaluate(first) == plain.evaluate(first)
    assert remembering.evaluate(second) == plain.evaluate(second) == [("positive",), ("positive",)]
    assert remembering.evaluate(first + second) == plain.evaluate(first + second)
    assert queried == [4, 1]  # the distinct new inputs of each batch, the third batch none


def test_remembered_inputs_tell_apart_what_duckdb_tells_apart():
    sign = rule("CAST(1 / model_score AS VARCHAR)")  # 0.0 and -0.0 are equal in Python, not here
    states = [{**ORDER.initial_state(), "model_score": score} for score in (0.0, -0.0, 0.0, None)]
    assert RuleEvaluator(ORDER, [sign], cache_size=100).evaluate(states) == RuleEvaluator(ORDER, [sign]).evaluate(
        states) == [("inf",), ("-inf",), ("inf",), (None,)]


def test_an_evaluator_remembers_at_most_cache_size_inputs():
    classification = rule("classification")
    evaluator = RuleEvaluator(ORDER, [classification], cache_size=3)
    for batch in (["A", "B"], ["C", "D"], ["E", "A", "B", "C"]):
        values = evaluator.evaluate([{**ORDER.initial_state(), "classification": c} for c in batch])
        assert values == [(c,) for c in batch]
        assert len(evaluator._cache) <= max(3, len(set(batch)))
