"""The consumer's hand-over without a broker: a coroutine that suspends is finished as an awaitable; changelog
records dropped after aiokafka handed them out are fetched again."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from types import SimpleNamespace

import pytest
from faust.transport.consumer import Consumer as FaustConsumer
from faust.transport.utils import DefaultSchedulingStrategy
from faust.types import TP

from labelstore.processors.transport import Consumer, FetchedChangelogs, _Resumed


async def hand_over(gate: asyncio.Future, steps: list) -> str:
    steps.append("started")
    value = await gate
    steps.append("resumed")
    return f"handed over {value}"


def start(coroutine):
    """What the consumer does first: run the coroutine until it suspends."""
    return _Resumed(coroutine, coroutine.send(None))


def test_a_suspended_hand_over_finishes_once_what_it_waits_for_is_done():
    async def scenario():
        gate, steps = asyncio.get_running_loop().create_future(), []
        resumed = asyncio.ensure_future(start(hand_over(gate, steps)))
        await asyncio.sleep(0.01)
        assert steps == ["started"] and not resumed.done()
        gate.set_result(7)
        assert await resumed == "handed over 7"
        assert steps == ["started", "resumed"]

    asyncio.run(scenario())


def test_a_suspended_hand_over_abandoned_is_cancelled_inside():
    async def scenario():
        gate, steps = asyncio.get_running_loop().create_future(), []
        resumed = asyncio.ensure_future(start(hand_over(gate, steps)))
        await asyncio.sleep(0.01)
        resumed.cancel()
        with pytest.raises(asyncio.CancelledError):
            await resumed
        assert gate.cancelled() and steps == ["started"]

    asyncio.run(scenario())


def test_an_error_after_resuming_reaches_the_awaiter():
    async def failing(gate):
        await gate
        raise ValueError("undeliverable")

    async def scenario():
        gate = asyncio.get_running_loop().create_future()
        resumed = asyncio.ensure_future(start(failing(gate)))
        await asyncio.sleep(0.01)
        gate.set_result(None)
        with pytest.raises(ValueError, match="undeliverable"):
            await resumed

    asyncio.run(scenario())


# -- changelog records Faust's getmany drops after aiokafka handed them out

def records(tp, offsets):
    return [SimpleNamespace(offset=offset, topic=tp.topic, partition=tp.partition) for offset in offsets]


CHANGELOG, EVENTS = TP("w-order-state-changelog", 4), TP("order.events", 4)


def test_changelog_records_are_handed_over_in_log_order_and_the_rest_named_for_a_rewind():
    fetched = FetchedChangelogs({CHANGELOG: records(CHANGELOG, [10, 11, 12, 13]), TP("w-other-changelog", 0): []})
    assert fetched.take(EVENTS, 99)  # not a changelog: not its business
    assert fetched.take(CHANGELOG, 10)
    assert not fetched.take(CHANGELOG, 12)  # 11 was dropped: 12 would be recovered before it
    assert not fetched.take(CHANGELOG, 13)
    assert fetched.dropped() == {CHANGELOG: (11, 13)}


def test_a_batch_handed_over_whole_leaves_nothing_to_rewind():
    fetched = FetchedChangelogs({CHANGELOG: records(CHANGELOG, [10, 11])})
    assert fetched.take(CHANGELOG, 10) and fetched.take(CHANGELOG, 11)
    assert fetched.dropped() == {}


class FakeAiokafka:
    """aiokafka's consumer as a rewind sees it: the partition's fetch position, and seeks."""

    def __init__(self, positions):
        states = {tp: SimpleNamespace(has_valid_position=position is not None, position=position)
                  for tp, position in positions.items()}
        assignment = SimpleNamespace(state_value=states.get)
        self._subscription = SimpleNamespace(subscription=SimpleNamespace(assignment=assignment))
        self.seeks = []

    def seek(self, tp, offset):
        self.seeks.append((tp, offset))


def fake_consumer(positions):
    aiokafka = FakeAiokafka(positions)
    consumer = Consumer.__new__(Consumer)
    consumer._thread = SimpleNamespace(_consumer=aiokafka, seek=aiokafka.seek, thread_loop=None)
    consumer._seeks, consumer._sought, consumer._fetched_changelogs = 0, {}, FetchedChangelogs({})
    return consumer, aiokafka


def test_a_changelog_whose_position_is_past_its_dropped_records_goes_back_to_the_first():
    consumer, aiokafka = fake_consumer({CHANGELOG: 1279})
    consumer._rewind_changelogs({CHANGELOG: (0, 1278)})
    assert aiokafka.seeks == [(CHANGELOG, 0)]


def test_a_changelog_sought_after_its_records_were_handed_out_is_left_where_the_seek_put_it():
    """A RocksDB store's recovery seeks past what its data directory holds: a rewind to records
    handed out before that seek would read the whole changelog again."""
    consumer, aiokafka = fake_consumer({CHANGELOG: 90_000})
    consumer._fetched_changelogs = FetchedChangelogs({}, seeks=consumer._seeks)
    consumer._seeks += 1
    consumer._sought[CHANGELOG] = consumer._seeks
    consumer._rewind_changelogs({CHANGELOG: (0, 1278)})
    assert aiokafka.seeks == []


@pytest.mark.parametrize("position", [0, 600, 1278, None])
def test_a_changelog_sought_back_since_or_not_assigned_is_left_alone(position):
    consumer, aiokafka = fake_consumer({CHANGELOG: position})
    consumer._rewind_changelogs({CHANGELOG: (0, 1278)})
    assert aiokafka.seeks == []


def test_changelog_records_fetched_while_the_flow_is_stopped_are_fetched_again(monkeypatch):
    """The stall of the scale-out test: a fetch waiting across a rebalance returns the changelog
    records the recovery had just sought to (Faust's active set was empty, so aiokafka filtered
    nothing); Faust's getmany drops them while the flow is stopped. The drain loop rewinds them."""
    async def fetched_across_the_rebalance(self, timeout):
        return {CHANGELOG: records(CHANGELOG, range(1279))}, set()

    monkeypatch.setattr(FaustConsumer, "_wait_next_records", fetched_across_the_rebalance)
    consumer, aiokafka = fake_consumer({CHANGELOG: 1279})
    fetcher = SimpleNamespace(_stopped=asyncio.Event())
    handed_over = []

    async def perform_seek():
        fetcher._stopped.set()  # one round is enough

    async def hand_over(message):
        handed_over.append(message)

    consumer.__dict__.update(
        _stopped=asyncio.Event(), _crashed=asyncio.Event(), _read_offset=defaultdict(lambda: None), _expected={},
        _commit_every=None, _n_acked=0, flow_active=False, scheduler=DefaultSchedulingStrategy(),
        log=SimpleNamespace(dev=lambda *args: None), perform_seek=perform_seek, _hand_over=hand_over,
        diag=SimpleNamespace(set_flag=lambda flag: None, unset_flag=lambda flag: None),
        app=SimpleNamespace(consumer_generation_id=4, intakes={},
                            topics=SimpleNamespace(acks_enabled_for=lambda topic: False),
                            tables=SimpleNamespace(changelog_topics={CHANGELOG.topic})))
    asyncio.run(consumer._drain_messages(fetcher))
    assert handed_over == [] and aiokafka.seeks == [(CHANGELOG, 0)]
