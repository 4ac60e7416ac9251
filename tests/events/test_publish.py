"""Publishing on a real broker: round trips, per-entity order, exactly-once arrival, refusals."""

from __future__ import annotations

import itertools
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka.partitioner import DefaultPartitioner

from tests.fraud_example import generate
from labelstore.events.exceptions import InvalidEventError
from tests.fraud_example import model
from labelstore.events.publisher import Publisher
from labelstore.events.reader import read_events, read_raw

OrderClassified = model('OrderClassified')
OrderTagged = model('OrderTagged')
ContentPublished = model('ContentPublished')

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def faust_partition(key: bytes, partitions: int) -> int:
    """The partition aiokafka, and so Faust, picks for a key (the Java client's murmur2)."""
    every = list(range(partitions))
    return DefaultPartitioner()(key, every, every)


def read_all(settings):
    return [stored for entity in settings.repository.entity_types
            for stored in read_events(settings, settings.topics.events_topic(entity))]


def test_every_event_type_round_trips(settings):
    one_of_each = {}
    for event in generate(400, 200, seed=3):
        one_of_each.setdefault(event.event_type, event)
    with Publisher(settings) as publisher:
        reports = publisher.publish_many(one_of_each.values())
    stored = read_all(settings)
    assert {s.event for s in stored} == set(one_of_each.values())
    assert len(stored) == len(one_of_each) == 11
    by_id = {s.event.event_id: s for s in stored}
    for report in reports:
        assert (by_id[report.event_id].partition, by_id[report.event_id].offset) == (report.partition, report.offset)
        # LogAppendTime: the broker's clock, not the event's business time
        assert by_id[report.event_id].recorded_at_ms == report.recorded_at_ms
        assert abs(report.recorded_at_ms / 1000 - datetime.now(UTC).timestamp()) < 120


def test_single_publish_returns_the_broker_report(settings):
    event = OrderClassified(entity_id="order-a", event_time=T0, source="risk",
                            payload={"classification": "FRAUD", "model_score": 0.9, "model_version": "v1"})
    with Publisher(settings) as publisher:
        report = publisher.publish(event).result(timeout=30)
    assert report.event_id == event.event_id
    assert report.topic == settings.topics.events_topic("order")
    assert report.partition == faust_partition(b"order-a", settings.kafka.partitions)
    assert report.offset == 0


def test_per_entity_order_is_kept_for_10k_entities(settings):
    entities, per_entity = 10_000, 5
    events = [
        OrderTagged(entity_id=f"order-{e:05d}", event_time=T0 + timedelta(seconds=step), source="test",
                    payload={"tag": f"step-{step}", "team": "test"})
        for step in range(per_entity) for e in range(entities)
    ]
    with Publisher(settings) as publisher:
        publisher.publish_many(events)
    seen = defaultdict(list)
    partitions = defaultdict(set)
    for stored in read_all(settings):
        seen[stored.event.entity_id].append(stored.event.payload.tag)
        partitions[stored.event.entity_id].add(stored.partition)
    assert len(seen) == entities
    assert all(tags == [f"step-{s}" for s in range(per_entity)] for tags in seen.values())
    # each entity in one partition, the one Faust/aiokafka/Java pick for its key (co-partitioning)
    for entity_id, used in partitions.items():
        assert used == {faust_partition(entity_id.encode(), settings.kafka.partitions)}
    assert len(set().union(*partitions.values())) == settings.kafka.partitions


def test_100k_events_arrive_exactly_once(settings):
    events = list(itertools.islice(generate(45_000, 5_000, seed=11), 100_000))
    assert len(events) == 100_000
    with Publisher(settings) as publisher:
        reports = publisher.publish_many(events)
    assert len({(r.topic, r.partition, r.offset) for r in reports}) == 100_000
    ids = [stored.event.event_id for stored in read_all(settings)]
    assert len(ids) == 100_000
    assert set(ids) == {event.event_id for event in events}
    assert_reports_point_at_their_events(settings, events, reports)


def assert_reports_point_at_their_events(settings, events, reports):
    """Each report is its event's (the batch's order), and names where that event is stored."""
    stored_at = {(settings.topics.events_topic(s.event.entity_type), s.partition, s.offset): s.event.event_id
                 for s in read_all(settings)}
    assert len(reports) == len(events)
    assert [r.event_id for r in reports] == [e.event_id for e in events]
    assert all(stored_at[r.topic, r.partition, r.offset] == r.event_id for r in reports)


def test_reports_of_one_key_on_two_topics_are_told_apart(settings):
    # The same id for an order and a content item: two topics, the same key, interleaved.
    events = []
    for step in range(200):
        events.append(OrderTagged(entity_id="shared-1", event_time=T0, source="test",
                                  payload={"tag": f"t{step}", "team": "test"}))
        events.append(ContentPublished(entity_id="shared-1", event_time=T0, source="test",
                                       payload={"author_id": "a", "kind": "POST", "title": f"p{step}", "language": "en"}))
    with Publisher(settings) as publisher:
        reports = publisher.publish_many(events)
    assert_reports_point_at_their_events(settings, events, reports)
    assert reports[-2:] == [reports[len(events) - 2], reports[len(events) - 1]] and len(reports[::2]) == 200


def test_invalid_event_is_refused_before_sending(settings):
    good = {"event_type": "OrderClassified", "entity_id": "order-1", "event_time": T0, "source": "risk",
            "payload": {"classification": "FRAUD", "model_score": 0.4, "model_version": "v1"}}
    bad = {**good, "entity_id": "order-2", "payload": {**good["payload"], "model_score": "high"}}
    with Publisher(settings) as publisher:
        with pytest.raises(InvalidEventError, match=r"OrderClassified\.payload\.model_score: .*'high'"):
            publisher.publish(bad)
        with pytest.raises(InvalidEventError, match=r"event_type: 'OrderShipped' is not an event type"):
            publisher.publish({**good, "event_type": "OrderShipped"})
        with pytest.raises(InvalidEventError, match=r"model_score"):
            publisher.publish_many([good, bad])  # the valid one is not sent either
    assert list(read_raw(settings, settings.topics.events_topic("order"))) == []


GOOD = {"event_type": "OrderCreated", "entity_id": "order-9", "event_time": T0, "source": "checkout",
        "payload": {"customer_id": "c-1", "amount_cents": 100, "currency": "EUR",
                    "shipping_address": {"line1": "1 Road", "city": "Berlin", "postal_code": "10115", "country": "DE"}}}
REFUSALS = {
    "wrong type": {**GOOD, "payload": {**GOOD["payload"], "amount_cents": "100"}},
    "missing field": {**GOOD, "payload": {k: v for k, v in GOOD["payload"].items() if k != "currency"}},
    "unknown field": {**GOOD, "payload": {**GOOD["payload"], "coupon": "x"}},
    "constraint (pattern)": {**GOOD, "payload": {**GOOD["payload"],
                                                 "shipping_address": {**GOOD["payload"]["shipping_address"], "country": "de"}}},
    "constraint (ge)": {**GOOD, "payload": {**GOOD["payload"], "amount_cents": -1}},
    "a long wider than 64 bits": {**GOOD, "payload": {**GOOD["payload"], "amount_cents": 2**63}},
    "empty entity id": {**GOOD, "entity_id": ""},
    "naive event time": {**GOOD, "event_time": datetime(2026, 3, 1)},
    "unknown event type": {**GOOD, "event_type": "OrderShipped"},
    "not a mapping": ["OrderCreated"],
}


@pytest.mark.parametrize("kind", list(REFUSALS))
def test_each_kind_of_invalid_event_is_refused_with_the_models_message(settings, kind):
    from labelstore.events.exceptions import InvalidEventError as Refused

    event = REFUSALS[kind]
    with pytest.raises(Refused) as by_the_models:
        settings.repository.event_types.parse(event)
    with Publisher(settings) as publisher:
        for send in (publisher.publish, lambda e: publisher.publish_many([GOOD, e])):
            with pytest.raises(InvalidEventError) as refused:
                send(event)
            assert str(refused.value) == str(by_the_models.value)
    assert list(read_raw(settings, settings.topics.events_topic("order"))) == []
