"""Which rule version applies to an event: activations, switching off and rolling back, by log time."""

from __future__ import annotations

import asyncio

from labelstore.catalog.activation import ActivationRecord, publish_activation
from labelstore.rules.model import load_rules
from labelstore.processors.rulebook import RuleBook


def versions(book: RuleBook, at_ms: int) -> dict[str, int]:
    return {rule.name: rule.version for rule in book.rules_at("order", at_ms)}


def test_activation_deactivation_and_rollback_apply_from_their_log_time():
    builtin = load_rules()
    fraud_v1 = next(r for r in builtin if r.name == "fraud")
    fraud_v2 = fraud_v1.model_copy(update={"version": 2, "expression": "'positive'"})
    book = RuleBook(builtin)
    assert versions(book, 0) == {"fraud": 1, "manual_review": 1} and not book.changes("order")

    def activate(rule, at_ms, label="fraud"):
        record = ActivationRecord(label=label, entity_type="order", rule=rule, activated_by="ana")
        book._apply(record.model_dump_json().encode(), at_ms, offset=0)

    activate(fraud_v2, 1_000)
    activate(None, 2_000)  # switched off
    activate(fraud_v1, 3_000)  # rolled back
    assert book.changes("order") and not book.changes("content")
    assert versions(book, 999) == {"fraud": 1, "manual_review": 1}
    assert versions(book, 1_000) == {"fraud": 2, "manual_review": 1}  # inclusive: from its own log time
    assert versions(book, 1_999) == {"fraud": 2, "manual_review": 1}
    assert versions(book, 2_000) == {"manual_review": 1}
    assert versions(book, 3_500) == {"fraud": 1, "manual_review": 1}
    assert {r.name for r in book.rules_at("content", 5_000)} == {"misinformation"}


def test_a_malformed_rules_record_is_ignored():
    book = RuleBook(load_rules())
    book._apply(b"{not json", 1_000, offset=7)
    assert not book.changes("order")


def test_the_event_loop_waits_for_activations_logged_before_a_time_read_from_the_brokers(settings):
    builtin = load_rules()
    fraud_v2 = next(r for r in builtin if r.name == "fraud").model_copy(update={"version": 2})
    record = ActivationRecord(label="fraud", entity_type="order", rule=fraud_v2, activated_by="ana")
    _, _, logged_at = publish_activation(settings, record)
    book = RuleBook(builtin, settings)

    async def scenario() -> None:
        waiting = [book.known_through(logged_at + 1) for _ in range(2)]  # two agents
        assert not any(known.done() for known in waiting)
        await asyncio.wait_for(asyncio.gather(*waiting), 30)
        assert book.known_through(logged_at).done()  # already known: no read

    try:
        asyncio.run(scenario())
        assert versions(book, logged_at - 1) == {"fraud": 1, "manual_review": 1}
        assert versions(book, logged_at) == {"fraud": 2, "manual_review": 1}
    finally:
        book.close()


def test_a_read_finishing_just_before_an_agent_waits_still_answers_it():
    book = RuleBook(load_rules())
    book._consumer = object()  # as if reading a rules topic; no read is needed here
    book.known_through_ms = 100

    class ReadFinishesFirst(type(book._lock)):
        def __enter__(self):  # the reader finished a read through 200 between the agent's check and its lock
            book.known_through_ms = 200
            return super().__enter__()

    book._lock = ReadFinishesFirst()

    async def scenario() -> None:
        await asyncio.wait_for(book.known_through(150), 1)

    asyncio.run(scenario())
