"""The fold applies declared operations; the same events always give the same states."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from labelstore.declarations import load_declarations, parse_declaration
from labelstore.fold import EntityFold, UnfoldableEventError

T = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def order_fold():
    return EntityFold(load_declarations()["order"])


def record(**payload):
    return {"event_time": T, "payload": payload}


def test_operations(order_fold):
    states = order_fold.states([
        ("OrderTagged", record(tag="vip", team="crm")),
        ("OrderTagged", record(tag="false-negative", team="review")),
        ("OrderTagged", record(tag="vip", team="crm")),
        ("OrderUntagged", record(tag="vip", team="crm")),
        ("OrderUpdated", record(shipping_address=None, amount_cents=500)),
        ("ChargebackReceived", record(amount_cents=500, reason_code="10.4")),
    ])
    assert [s["tags"] for s in states] == [("vip",), ("false-negative", "vip"), ("false-negative", "vip"),
                                           ("false-negative",), ("false-negative",), ("false-negative",)]
    assert states[4]["address_changes"] == 0  # when_present: no address in this update
    assert states[4]["shipping_country"] is None and states[4]["amount_cents"] == 500
    assert states[5]["chargebacks"] == 1
    assert states[0]["first_event_time"] == states[5]["last_event_time"] == int(T.timestamp() * 1000)


def test_apply_leaves_the_given_state_alone(order_fold):
    before = order_fold.initial_state()
    after = order_fold.apply(before, "OrderTagged", record(tag="x", team="t"))
    assert before["tags"] == () and after["tags"] == ("x",)


def test_if_present_keeps_the_old_value(order_fold):
    state = order_fold.apply(None, "OrderCreated", record(customer_id="c", amount_cents=1, currency="EUR",
                                                          shipping_address={"country": "DE"}))
    state = order_fold.apply(state, "OrderUpdated", record(shipping_address=None, amount_cents=None))
    assert state["shipping_country"] == "DE" and state["amount_cents"] == 1


def test_undeclared_event_type_is_refused():
    declaration = parse_declaration("entity_type: order\nfields: {tags: set<string>}\nevents: {}")
    with pytest.raises(UnfoldableEventError, match="no operations for event type 'OrderTagged'"):
        EntityFold(declaration).apply(None, "OrderTagged", record(tag="x", team="t"))
