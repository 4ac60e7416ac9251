"""This repository's demo data: realistic order and content lifecycles, merged in event-time order.

``labelstore demo`` runs the hooks at the end of this file (``demo_events``, ``demo_stories``,
``DEMO_LABEL``); events are built with the models labelstore generates from ``schemas/``.

The same ``orders``, ``content`` and ``seed`` always give the same events, ids included. Two
orders reproduce the cases labelstore exists for:

- ``order-seed-address-change``: classified NOT_FRAUD, then its shipping address changes and the
  re-analysis says FRAUD (a mutable label);
- ``order-seed-false-negative``: classified NOT_FRAUD, later tagged ``false-negative`` by the
  fraud review team (a label derived from fields owned by two teams).
"""

from __future__ import annotations

import heapq
import functools
import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from random import Random
from typing import Any
from uuid import UUID

from labelstore.events.models import Event
from labelstore.events.typed import EventTypes
from labelstore.repository import current

SEED_ADDRESS_CHANGE = "order-seed-address-change"
SEED_FALSE_NEGATIVE = "order-seed-false-negative"
DEMO_START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
ARRIVAL_WINDOW = timedelta(days=30)
CITIES = [("Berlin", "DE", "10115"), ("Lyon", "FR", "69001"), ("Austin", "US", "73301"), ("Leeds", "GB", "LS1 1UR")]
CATEGORIES = ["news", "health", "sports", "politics", "science"]

# A planned event: (time, tie-breaker, entity_id, event_type, source, payload). Models are built
# only when an event is yielded, so a large demo keeps little in memory.
Planned = tuple[datetime, int, str, str, str, dict[str, Any]]


class _Planner:
    def __init__(self, rng: Random) -> None:
        self.rng = rng
        self._sequence = itertools.count()

    def at(self, when: datetime, entity_id: str, event_type: str, source: str, **payload: Any) -> Planned:
        return (when, next(self._sequence), entity_id, event_type, source, payload)

    def minutes(self, low: float, high: float) -> timedelta:
        return timedelta(minutes=self.rng.uniform(low, high))

    def address(self) -> dict[str, str]:
        city, country, postal = self.rng.choice(CITIES)
        return {"line1": f"{self.rng.randint(1, 240)} Demo Street", "city": city, "postal_code": postal, "country": country}


def generate(orders: int, content: int, *, seed: int = 7, start: datetime = DEMO_START) -> Iterator[Event]:
    """Yield ``orders`` order lifecycles and ``content`` content lifecycles in event-time order."""
    rng = Random(seed)
    planner = _Planner(rng)
    return _build(_merge_by_time(_timelines(planner, orders, content, start)), rng)


def _timelines(planner: _Planner, orders: int, content: int, start: datetime) -> Iterator[list[Planned]]:
    """Lifecycles in order of their first event; the two seed orders come first."""
    seeds = [_seed_address_change, _seed_false_negative][: min(orders, 2)]
    starts = _arrivals(start, orders + content)
    kinds = ["order"] * (orders - len(seeds)) + ["content"] * content
    planner.rng.shuffle(kinds)
    numbers = {"order": itertools.count(1), "content": itertools.count(1)}
    for index, when in enumerate(starts):
        if index < len(seeds):
            yield seeds[index](planner, when)
            continue
        kind = kinds[index - len(seeds)]
        lifecycle = _order_lifecycle if kind == "order" else _content_lifecycle
        yield lifecycle(planner, f"{kind}-{next(numbers[kind]):07d}", when)


def _arrivals(start: datetime, count: int) -> Iterator[datetime]:
    step = ARRIVAL_WINDOW / max(count, 1)
    return (start + step * i for i in range(count))


def seed_stories(suffix: str = "", *, start: datetime = DEMO_START, seed: int = 7) -> dict[str, list[Event]]:
    """The two seed orders alone, with ``suffix`` appended to their ids (for a live replay)."""
    rng = Random(seed)
    planner = _Planner(rng)
    stories = {}
    for story in (_seed_address_change, _seed_false_negative):
        planned = story(planner, start, suffix)
        stories[planned[0][2]] = list(_build(iter(planned), rng))
    return stories


def _seed_address_change(p: _Planner, t0: datetime, suffix: str = "") -> list[Planned]:
    e = SEED_ADDRESS_CHANGE + suffix
    return [
        p.at(t0, e, "OrderCreated", "checkout", customer_id="customer-seed-1", amount_cents=12_900,
             currency="EUR", shipping_address={"line1": "1 Quiet Lane", "city": "Berlin", "postal_code": "10115", "country": "DE"}),
        p.at(t0 + timedelta(minutes=1), e, "OrderClassified", "risk-model", classification="NOT_FRAUD", model_score=0.12, model_version="risk-v3"),
        p.at(t0 + timedelta(hours=6), e, "OrderUpdated", "checkout",
             shipping_address={"line1": "99 Drop Point", "city": "Leeds", "postal_code": "LS1 1UR", "country": "GB"}, amount_cents=None),
        p.at(t0 + timedelta(hours=6, minutes=2), e, "OrderClassified", "risk-model", classification="FRAUD", model_score=0.91, model_version="risk-v3"),
    ]


def _seed_false_negative(p: _Planner, t0: datetime, suffix: str = "") -> list[Planned]:
    e = SEED_FALSE_NEGATIVE + suffix
    return [
        p.at(t0, e, "OrderCreated", "checkout", customer_id="customer-seed-2", amount_cents=45_000,
             currency="EUR", shipping_address={"line1": "5 Market Square", "city": "Lyon", "postal_code": "69001", "country": "FR"}),
        p.at(t0 + timedelta(minutes=2), e, "OrderClassified", "risk-model", classification="NOT_FRAUD", model_score=0.31, model_version="risk-v3"),
        p.at(t0 + timedelta(days=12), e, "OrderTagged", "fraud-review", tag="false-negative", team="fraud-review"),
    ]


def _order_lifecycle(p: _Planner, order_id: str, t0: datetime) -> list[Planned]:
    rng = p.rng
    truly_fraud = rng.random() < 0.06
    fooled = rng.random() < 0.04  # the model takes a good order for fraud: customer care tags it false-positive
    score = min(1.0, max(0.0, rng.gauss(0.75 if truly_fraud else 0.9 if fooled else 0.15, 0.15 if not fooled else 0.05)))
    events = [p.at(t0, order_id, "OrderCreated", "checkout", customer_id=f"customer-{rng.randint(1, 50_000)}",
                   amount_cents=rng.randint(500, 90_000), currency=rng.choice(["EUR", "USD", "GBP"]), shipping_address=p.address())]
    t = t0 + p.minutes(0.5, 5)
    events.append(_classification(p, order_id, t, score))
    if rng.random() < 0.15:
        t += p.minutes(60, 48 * 60)
        events.append(p.at(t, order_id, "OrderUpdated", "checkout", shipping_address=p.address(), amount_cents=None))
        score = min(1.0, score + rng.uniform(0.0, 0.5) if truly_fraud else score)
        events.append(_classification(p, order_id, t + p.minutes(1, 10), score))
    said_fraud = score > 0.8
    if rng.random() < 0.05:
        events.append(p.at(t + p.minutes(60, 3 * 24 * 60), order_id, "ManualReviewDecided", "review-desk",
                           decision="REJECT" if truly_fraud else "APPROVE", reviewer=f"reviewer-{rng.randint(1, 20)}", note=None))
    if truly_fraud and not said_fraud and rng.random() < 0.6:
        events += _tag_and_maybe_untag(p, order_id, t + p.minutes(3 * 24 * 60, 20 * 24 * 60), "false-negative", "fraud-review")
    if said_fraud and not truly_fraud and rng.random() < 0.5:
        events += _tag_and_maybe_untag(p, order_id, t + p.minutes(24 * 60, 10 * 24 * 60), "false-positive", "customer-care")
    if rng.random() < 0.08:
        events += _tag_and_maybe_untag(p, order_id, t + p.minutes(10, 24 * 60), "vip", "crm")
    if truly_fraud and rng.random() < 0.5:
        events.append(p.at(t + p.minutes(20 * 24 * 60, 60 * 24 * 60), order_id, "ChargebackReceived", "payments",
                           amount_cents=rng.randint(500, 90_000), reason_code=rng.choice(["10.4", "4837", "FR2"])))
    return sorted(events)


def _classification(p: _Planner, order_id: str, when: datetime, score: float) -> Planned:
    return p.at(when, order_id, "OrderClassified", "risk-model", classification="FRAUD" if score > 0.8 else "NOT_FRAUD",
                model_score=round(score, 4), model_version="risk-v3")


def _tag_and_maybe_untag(p: _Planner, order_id: str, when: datetime, tag: str, team: str) -> list[Planned]:
    events = [p.at(when, order_id, "OrderTagged", team, tag=tag, team=team)]
    if p.rng.random() < 0.1:
        events.append(p.at(when + p.minutes(60, 5 * 24 * 60), order_id, "OrderUntagged", team, tag=tag, team=team))
    return events


def _content_lifecycle(p: _Planner, content_id: str, t0: datetime) -> list[Planned]:
    rng = p.rng
    misinformation = rng.random() < 0.1
    events = [
        p.at(t0, content_id, "ContentPublished", "cms", author_id=f"author-{rng.randint(1, 5_000)}",
             kind=rng.choice(["ARTICLE", "POST"]), title=f"Story {content_id[-4:]}", language=rng.choice(["en", "de", "fr"])),
        p.at(t0 + p.minutes(1, 10), content_id, "ContentClassified", "content-model", category=rng.choice(CATEGORIES),
             model_score=round(rng.random(), 4), model_version="topics-v2"),
    ]
    reports = rng.choices([0, 1, 2, 5], weights=[60, 20, 10, 10] if misinformation else [85, 10, 4, 1])[0]
    t = t0
    for _ in range(reports):
        t += p.minutes(5, 24 * 60)
        reason = "MISINFORMATION" if misinformation and rng.random() < 0.7 else rng.choice(["SPAM", "ABUSE", "OTHER", "MISINFORMATION"])
        events.append(p.at(t, content_id, "UserReported", "reports-api", reporter_id=f"user-{rng.randint(1, 90_000)}", reason=reason))
    if reports or rng.random() < 0.05:
        correct = rng.random() < 0.95
        verdict = "MISINFORMATION" if misinformation == correct else "OK"
        events.append(p.at(t + p.minutes(30, 3 * 24 * 60), content_id, "ReviewerVerdict", "trust-safety",
                           verdict=verdict, reviewer=f"reviewer-{rng.randint(1, 40)}"))
    return sorted(events)


def _merge_by_time(timelines: Iterator[list[Planned]]) -> Iterator[Planned]:
    """Merge lifecycles that start in time order, holding only the ones still in progress."""
    pending: list[Planned] = []
    for timeline in timelines:
        while pending and pending[0] <= timeline[0]:
            yield heapq.heappop(pending)
        for planned in timeline:
            heapq.heappush(pending, planned)
    while pending:
        yield heapq.heappop(pending)


@functools.cache
def _event_types() -> EventTypes:
    return current(Path(__file__).parent).event_types


def _build(planned: Iterator[Planned], rng: Random) -> Iterator[Event]:
    models = _event_types()
    for when, _, entity_id, event_type, source, payload in planned:
        event_id = UUID(int=rng.getrandbits(128), version=4)
        yield models.model(event_type)(event_id=event_id, entity_id=entity_id, event_time=when, source=source,
                                       payload=payload)


# --- the hooks `labelstore demo` calls ----------------------------------------------------------

DEMO_LABEL = "fraud"  # the label the live replay shows after each event


def demo_events(size: int, *, seed: int = 7) -> Iterator[Event]:
    """``size`` lifecycles: four orders for every content item."""
    content = size // 5
    return generate(size - content, content, seed=seed)


def demo_stories(suffix: str = "") -> dict[str, list[Event]]:
    """Entities whose events the demo replays one by one, showing the label after each."""
    return seed_stories(suffix)
