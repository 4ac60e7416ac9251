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

from labelstore.processors.transport import App, Consumer, FetchedChangelogs, _Resumed


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


# -- changelog records dropped after aiokafka handed them out

def records(tp, offsets):
    return [SimpleNamespace(offset=offset, topic=tp.topic, partition=tp.partition, tp=tp) for offset in offsets]


def events(tp, offsets):
    """What Faust's conductor puts in the changelog queue: events carrying their message."""
    return [SimpleNamespace(message=record) for record in records(tp, offsets)]


CHANGELOG, EVENTS = TP("w-order-state-changelog", 4), TP("order.events", 4)
STANDBY = TP("w-order-state-changelog", 1)


def test_changelog_records_are_handed_over_in_log_order_and_the_rest_named_for_a_rewind():
    fetched = FetchedChangelogs({CHANGELOG: records(CHANGELOG, [10, 11, 12, 13]), TP("w-other-changelog", 0): []})
    assert fetched.take(EVENTS, 99) is None  # not a changelog: not its business
    assert fetched.take(CHANGELOG, 10)
    assert not fetched.take(CHANGELOG, 12)  # 11 was dropped: 12 would be recovered before it
    assert not fetched.take(CHANGELOG, 13)
    assert fetched.dropped() == {CHANGELOG: 11}


def test_a_batch_handed_over_whole_leaves_nothing_to_rewind():
    fetched = FetchedChangelogs({CHANGELOG: records(CHANGELOG, [10, 11])})
    assert fetched.take(CHANGELOG, 10) and fetched.take(CHANGELOG, 11)
    assert fetched.dropped() == {}


def test_a_batch_asked_for_before_its_partition_was_sought_hands_none_of_it_over():
    """It may hold records from before the seek: recovered first, they would make the recovery skip
    the records the seek went for."""
    sought_at = {}
    fetched = FetchedChangelogs({CHANGELOG: records(CHANGELOG, [500, 501]), STANDBY: records(STANDBY, [7])},
                                seeks=3, sought_at=sought_at)
    assert fetched.take(CHANGELOG, 500)
    sought_at[CHANGELOG] = 4  # sought while the batch was being handed over
    assert not fetched.take(CHANGELOG, 501)
    assert fetched.take(STANDBY, 7)
    assert fetched.dropped() == {CHANGELOG: 501}


class FakeAiokafka:
    """aiokafka's consumer as a rewind sees it: the partition's fetch position, and seeks."""

    def __init__(self, positions):
        self.states = {tp: SimpleNamespace(has_valid_position=position is not None, position=position)
                       for tp, position in positions.items()}
        assignment = SimpleNamespace(state_value=self.states.get)
        self._subscription = SimpleNamespace(subscription=SimpleNamespace(assignment=assignment))
        self.seeks = []

    def seek(self, tp, offset):
        self.seeks.append((tp, offset))
        self.states[tp].position = offset


def fake_consumer(positions):
    aiokafka = FakeAiokafka(positions)
    consumer = Consumer.__new__(Consumer)
    consumer._thread = SimpleNamespace(_consumer=aiokafka, seek=aiokafka.seek, thread_loop=None)
    consumer._stopped, consumer._crashed = asyncio.Event(), asyncio.Event()
    consumer._fetched_changelogs = FetchedChangelogs({})
    consumer._seeks, consumer._sought_at, consumer._sought_to, consumer._requested_at = 0, {}, {}, 0
    consumer.app = SimpleNamespace(tables=SimpleNamespace(_changelog_queue=None, changelog_topics={CHANGELOG.topic}))
    return consumer, aiokafka


def test_a_changelog_whose_position_is_past_its_dropped_records_goes_back_to_the_first():
    consumer, aiokafka = fake_consumer({CHANGELOG: 1279})
    consumer.changelogs_discarded({CHANGELOG: 0})
    assert aiokafka.seeks == [(CHANGELOG, 0)]


def test_records_dropped_below_fausts_last_seek_are_left_behind_and_those_after_it_fetched_again():
    """A RocksDB store's recovery seeks past what its data directory holds: a rewind to records
    dropped below that seek would read the whole changelog again. Records at or after it are the
    recovery's, whenever they were fetched (a fetch waiting across the seek returns them)."""
    consumer, aiokafka = fake_consumer({CHANGELOG: 90_500})
    consumer._sought_to[CHANGELOG] = 90_000
    consumer.changelogs_discarded({CHANGELOG: 0})
    assert aiokafka.seeks == []
    consumer.changelogs_discarded({CHANGELOG: 90_000})
    assert aiokafka.seeks == [(CHANGELOG, 90_000)]


@pytest.mark.parametrize("position, seeks", [(0, []), (600, [(CHANGELOG, 0)]), (None, [])])
def test_a_changelog_not_past_its_dropped_records_or_not_assigned_is_left_alone(position, seeks):
    consumer, aiokafka = fake_consumer({CHANGELOG: position})
    consumer.changelogs_discarded({CHANGELOG: 0})
    assert aiokafka.seeks == seeks  # at 600, records 0-599 would never come


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
        return True

    consumer.__dict__.update(
        _read_offset=defaultdict(lambda: None), _expected={},
        _commit_every=None, _n_acked=0, flow_active=False, scheduler=DefaultSchedulingStrategy(),
        log=SimpleNamespace(dev=lambda *args: None), perform_seek=perform_seek, _hand_over=hand_over,
        diag=SimpleNamespace(set_flag=lambda flag: None, unset_flag=lambda flag: None))
    consumer.app.__dict__.update(consumer_generation_id=4, intakes={},
                                 topics=SimpleNamespace(acks_enabled_for=lambda topic: False))
    asyncio.run(consumer._drain_messages(fetcher))
    assert handed_over == [] and aiokafka.seeks == [(CHANGELOG, 0)]


# -- the changelog queue, which Faust clears when it resumes the flow

def app_with_fake_aiokafka(positions, **options):
    """The worker's app, its consumer's aiokafka replaced by ``FakeAiokafka`` (no broker)."""
    app = App("t-changelogs", broker="kafka://127.0.0.1:1", web_host="127.0.0.1", web_port=1, **options)
    aiokafka = FakeAiokafka(positions)

    async def seek_wait(partitions):
        for tp, offset in partitions.items():
            aiokafka.seek(tp, offset)

    app.consumer._thread = SimpleNamespace(_consumer=aiokafka, seek=aiokafka.seek, seek_wait=seek_wait,
                                           thread_loop=None)
    return app, aiokafka


def queued(queue, tp, offsets):
    for event in events(tp, offsets):  # as Faust's conductor puts them
        queue.put_nowait_enhanced(event, on_pressure_high=lambda: None, on_pressure_drop=lambda: None)


def test_standby_records_cleared_when_a_recovery_completes_are_fetched_again():
    """Faust's ``Recovery.on_recovery_completed`` resumes the flow, which clears the changelog queue:
    in a scale-out run 3,448 records handed over for standby partitions went that way, while the
    standby's fetch went on after them. A RocksDB standby would have saved an offset past them."""
    async def scenario():
        app, aiokafka = app_with_fake_aiokafka({STANDBY: 0})
        consumer, queue = app.consumer, app.tables.changelog_queue
        await consumer.seek_wait({STANDBY: 600})  # the recovery's seek of its standby partition
        asked_before_the_clear = consumer._seeks
        queued(queue, STANDBY, range(600, 700))
        aiokafka.states[STANDBY].position = 700  # handed out by aiokafka
        assert [(await queue.get()).message.offset for _ in range(50)] == list(range(600, 650))
        app.flow_control.resume()  # what on_recovery_completed does
        assert queue.empty()
        assert aiokafka.seeks == [(STANDBY, 600), (STANDBY, 650)]
        # A batch asked for before the rewind (700 on) must not reach the standby ahead of 650-699.
        fetched = FetchedChangelogs({STANDBY: records(STANDBY, range(700, 710))}, seeks=asked_before_the_clear,
                                    sought_at=consumer._sought_at)
        assert not fetched.take(STANDBY, 700)

    asyncio.run(scenario())


def test_a_put_waiting_for_room_that_the_clear_cancels_is_fetched_again():
    async def scenario():
        app, aiokafka = app_with_fake_aiokafka({CHANGELOG: 12, STANDBY: 651}, stream_buffer_maxsize=2)
        queue = app.tables.changelog_queue
        app.flow_control.resume()  # the flow open (a put waits for it first)
        queued(queue, CHANGELOG, [10, 11])
        waiting = asyncio.ensure_future(queue.put(events(STANDBY, [650])[0]))  # the conductor's put when full
        await asyncio.sleep(0)
        app.flow_control.suspend()  # a rebalance, then the end of its recovery
        app.flow_control.resume()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert sorted(aiokafka.seeks) == [(STANDBY, 650), (CHANGELOG, 10)]

    asyncio.run(scenario())


def test_a_changelog_hand_over_abandoned_for_a_rebalance_is_fetched_again():
    async def scenario():
        app, aiokafka = app_with_fake_aiokafka({STANDBY: 651})
        consumer = app.consumer
        never = asyncio.get_running_loop().create_future()

        async def on_message(message):  # waits for the flow, as the conductor does while it is suspended
            await never

        consumer.callback = on_message
        consumer.stop_flow()
        await consumer._hand_over_changelog(records(STANDBY, [650])[0], consumer._seeks)
        assert aiokafka.seeks == [(STANDBY, 650)]

    asyncio.run(scenario())


def test_what_the_queue_holds_of_a_partition_faust_seeks_is_dropped_without_a_rewind():
    """Fetched from where the partition was: Faust's next resume would drop it, the recovery could
    read it first; a rewind to it would undo the seek."""
    async def scenario():
        app, aiokafka = app_with_fake_aiokafka({CHANGELOG: 1279, STANDBY: 40})
        queue = app.tables.changelog_queue
        queued(queue, CHANGELOG, [1277, 1278])
        queued(queue, STANDBY, [38, 39])
        await app.consumer.seek_wait({CHANGELOG: 90_000})
        assert [event.message.tp for event in queue._queue] == [STANDBY, STANDBY]
        app.flow_control.resume()
        assert aiokafka.seeks == [(CHANGELOG, 90_000), (STANDBY, 38)]

    asyncio.run(scenario())
