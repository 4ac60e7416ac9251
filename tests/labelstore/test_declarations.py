"""Entity declarations are data, checked against the event schemas when they load."""

from __future__ import annotations

import pytest

from tests.fraud_example import EXAMPLE
from labelstore.declarations import DeclarationError, check_against_schemas, load_declarations, parse_declaration
from labelstore.schemas.catalog import load_schema_set

SCHEMAS = load_schema_set(EXAMPLE.schemas_dir)


def check(text: str) -> None:
    check_against_schemas(parse_declaration(text, origin="test.yaml"), SCHEMAS, origin="test.yaml")


BASE = """
entity_type: order
fields:
  classification: string
  tags: set<string>
  changes: {type: long, default: 0}
events:
"""


def test_shipped_declarations_load():
    declarations = load_declarations()
    assert set(declarations) == {"order", "content"}
    assert declarations["order"].initial_state()["tags"] == ()
    assert declarations["order"].initial_state()["address_changes"] == 0


@pytest.mark.parametrize(
    ("events", "message"),
    [
        ("  OrderClassified:\n    - {op: set, field: clasification, from: payload.classification}",
         r"events.OrderClassified\[0\]: field 'clasification' is not declared"),
        ("  OrderTagged:\n    - {op: set, field: tags, from: payload.tag}",
         r"`set` does not apply to tags \(set<string>\); use one of add, remove, unset"),
        ("  OrderClassified:\n    - {op: add, field: classification, from: payload.classification}",
         r"`add` does not apply to classification \(string\)"),
        ("  OrderClassified:\n    - {op: set, field: classification, from: payload.verdict}",
         r"path 'payload.verdict' does not exist in the event"),
        ("  OrderClassified:\n    - {op: set, field: classification, from: payload.model_score}",
         r"path 'payload.model_score' is Avro double; field classification \(string\) cannot hold it"),
        ("  ContentPublished:\n    - {op: set, field: classification, from: payload.kind}",
         r"events.ContentPublished: not an event type of entity 'order'"),
        ("  OrderShipped:\n    - {op: increment, field: changes}", r"events.OrderShipped: not an event type"),
    ],
)
def test_wrong_declarations_say_what_and_where(events, message):
    with pytest.raises(DeclarationError, match=message):
        check(BASE + events)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (BASE + "  OrderClassified:\n    - {op: set, field: classification}", r"`set` needs `from` \(a path\) or `value`"),
        (BASE + "  OrderClassified:\n    - {op: unset, field: classification, value: x}", "`unset` takes no"),
        (BASE + "  OrderClassified:\n    - {op: replace, field: classification}", r"events.OrderClassified.0.op"),
        (BASE.replace("set<string>", "list<int>") + "  OrderTagged: []", r"fields.tags.type"),
        ("entity_type: order\nfields: [\n", "not valid YAML"),
    ],
)
def test_malformed_declarations_are_refused(text, message):
    with pytest.raises(DeclarationError, match=message):
        parse_declaration(text, origin="test.yaml")
