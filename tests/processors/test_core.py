"""The processor's batch logic on hand-made messages, without Kafka."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.fraud_example import model, example_serializer
from labelstore.declarations import load_declarations
from labelstore.rules.model import load_rules
from labelstore.processors.core import EntityProcessor, RawMessage

OrderClassified = model('OrderClassified')
OrderCreated = model('OrderCreated')
OrderTagged = model('OrderTagged')
OrderUntagged = model('OrderUntagged')
OrderUpdated = model('OrderUpdated')

T1 = datetime(2026, 2, 1, 10, 0, tzinfo=UTC)
SERIALIZER = example_serializer()
ADDRESS = {"line1": "1 Quiet Lane", "city": "Berlin", "postal_code": "10115", "country": "DE"}


@pytest.fixture
def processor():
    declarations = load_declarations()
    return EntityProcessor(declarations["order"], [r for r in load_rules() if r.entity_type == "order"])


class Log:
    """A fake partition log: offsets and broker times as Kafka would assign them."""

    def __init__(self):
        self.offset = -1

    def message(self, event, *, key=None, value=None):
        self.offset += 1
        return RawMessage("orders.events", 0, self.offset, 1_800_000_000_000 + self.offset,
                          event.entity_id.encode() if key is None else key,
                          SERIALIZER.encode(event) if value is None else value)


def created(entity_id, t):
    return OrderCreated(entity_id=entity_id, event_time=t, source="checkout",
                        payload={"customer_id": "c1", "amount_cents": 100, "currency": "EUR", "shipping_address": ADDRESS})


def classified(entity_id, t, classification):
    return OrderClassified(entity_id=entity_id, event_time=t, source="risk",
                           payload={"classification": classification, "model_score": 0.5, "model_version": "v1"})


def tagged(entity_id, t, tag, *, untag=False):
    model = OrderUntagged if untag else OrderTagged
    return model(entity_id=entity_id, event_time=t, source="review", payload={"tag": tag, "team": "fraud-review"})


def run(processor, messages, store):
    result = processor.process(messages, store.get)
    store.update(result.records)
    return result


def test_seed_timeline_not_fraud_then_address_change_then_fraud(processor):
    log, store = Log(), {}
    events = [created("o1", T1), classified("o1", T1 + timedelta(minutes=1), "NOT_FRAUD"),
              OrderUpdated(entity_id="o1", event_time=T1 + timedelta(hours=2), source="checkout",
                           payload={"shipping_address": {**ADDRESS, "country": "GB"}}),
              classified("o1", T1 + timedelta(hours=3), "FRAUD")]
    result = run(processor, [log.message(e) for e in events], store)
    assert [(v.label, v.previous_value, v.value, v.caused_by.offset) for v in result.versions] == [
        ("fraud", None, "negative", 1), ("fraud", "negative", "positive", 3)]
    first, second = result.versions
    assert first.event_time == int((T1 + timedelta(minutes=1)).timestamp() * 1000)
    assert second.recorded_at == 1_800_000_000_003 and second.caused_by.event_id == events[3].event_id
    assert store[b"o1"]["state"]["shipping_country"] == "GB"
    assert store[b"o1"]["labels"]["fraud"]["value"] == "positive"


def test_false_negative_tag_flips_negative_to_positive_and_untag_flips_back(processor):
    log, store = Log(), {}
    run(processor, [log.message(created("o2", T1)), log.message(classified("o2", T1, "NOT_FRAUD"))], store)
    flip = run(processor, [log.message(tagged("o2", T1 + timedelta(days=9), "false-negative"))], store)
    assert [(v.previous_value, v.value) for v in flip.versions] == [("negative", "positive")]
    back = run(processor, [log.message(tagged("o2", T1 + timedelta(days=10), "false-negative", untag=True))], store)
    assert [(v.previous_value, v.value) for v in back.versions] == [("positive", "negative")]


def test_abstaining_rule_emits_nothing(processor):
    log, store = Log(), {}
    result = run(processor, [log.message(created("o3", T1)), log.message(tagged("o3", T1, "vip"))], store)
    assert result.versions == [] and not result.dead_letters
    assert store[b"o3"]["labels"] == {}


def test_unchanged_label_emits_nothing(processor):
    log, store = Log(), {}
    run(processor, [log.message(created("o4", T1)), log.message(classified("o4", T1, "NOT_FRAUD"))], store)
    again = run(processor, [log.message(classified("o4", T1, "NOT_FRAUD")), log.message(tagged("o4", T1, "vip"))], store)
    assert again.versions == []


def test_one_entity_across_batches_equals_one_batch(processor):
    events = [created("o5", T1), classified("o5", T1, "NOT_FRAUD"), tagged("o5", T1, "false-negative"),
              classified("o5", T1, "FRAUD")]
    log = Log()
    messages = [log.message(e) for e in events]
    whole = run(processor, messages, {}).versions
    store, pieces = {}, []
    for message in messages:
        pieces += run(processor, [message], store).versions
    assert pieces == whole and len(whole) == 2


def test_replayed_messages_are_skipped(processor):
    log, store = Log(), {}
    messages = [log.message(created("o6", T1)), log.message(classified("o6", T1, "FRAUD"))]
    run(processor, messages, store)
    replay = run(processor, messages, store)
    assert replay.versions == [] and replay.skipped_replays == 2


def test_version_ids_are_deterministic(processor):
    events = [created("o7", T1), classified("o7", T1, "FRAUD")]
    first = run(processor, [m for m in (Log().message(e) for e in events)], {}).versions
    again = run(processor, [m for m in (Log().message(e) for e in events)], {}).versions
    assert [v.version_id for v in first] == [v.version_id for v in again]


def test_bad_messages_become_dead_letters_and_good_ones_still_count(processor):
    log = Log()
    good = classified("o8", T1, "FRAUD")
    bad_score = SERIALIZER.codec.encode("OrderClassified", {**good.to_record(), "payload": {
        "classification": "FRAUD", "model_score": 7.0, "model_version": "v1"}})
    messages = [
        log.message(created("o8", T1)),
        log.message(good, value=b"\x00garbage"),
        log.message(good, value=b"\xc3\x01" + bytes(8) + b"\x02"),
        log.message(good, key=b""),
        log.message(good, key=b"someone-else"),
        log.message(good, value=bad_score),
        log.message(good),
    ]
    result = run(processor, messages, {})
    assert [d.error_type for d in result.dead_letters] == [
        "CorruptMessageError", "UnknownSchemaError", "missing-key", "key-mismatch", "invalid-event"]
    assert "model_score" in result.dead_letters[-1].reason
    assert [(v.value, v.caused_by.offset) for v in result.versions] == [("positive", 6)]
