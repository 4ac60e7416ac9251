"""Micro-batches taken from a topic's intake: sizes, stale messages, idling, back-pressure."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

from labelstore.processors.batches import MessageBatches
from labelstore.processors.transport import Intake


class Message(SimpleNamespace):
    __hash__ = object.__hash__  # Faust's messages are hashable: the consumer tracks them in a set


def message(offset: int, generation: int = 1, logged_s_ago: float = 5.0, partition: int = 0) -> Message:
    return Message(offset=offset, generation_id=generation, timestamp=time.time() - logged_s_ago,
                   tp=("events", partition))


def fake_app(tracked: list, acked: list, rewinds: list | None = None, *, rewound: bool = True) -> SimpleNamespace:
    """``rewinds`` collects what the batches asked the consumer to fetch again; ``rewound``: whether it did."""
    def rewind(dropped):
        if rewinds is not None:
            rewinds.append(dropped)
        return dropped if rewound else {}

    consumer = SimpleNamespace(track_message=tracked.append, ack=acked.append, rewind=rewind, seeked_generation=1)
    return SimpleNamespace(consumer=consumer, consumer_generation_id=1,
                           flow_control=SimpleNamespace(is_active=lambda: True))


def test_a_batch_is_what_is_waiting_up_to_the_maximum_and_stale_messages_are_never_acknowledged():
    async def scenario():
        intake, tracked, acked = Intake(max_buffered=100), [], []
        messages = [message(0), message(1, generation=0), *(message(offset) for offset in range(2, 6))]
        for each in messages:
            intake.put(each)
        # (a seek covers the stale message here: see the rewind tests below for when none does)
        batches = MessageBatches(fake_app(tracked, acked, rewound=False), intake, max_events=4, within_s=0.01)
        first = await batches.take()
        assert [each.offset for each in first] == [0, 2, 3]  # 4 taken, 1 of an older generation
        # Acknowledged, the stale message would let a commit pass over an event never processed.
        assert acked == [] and tracked == first
        batches.ack(first)
        assert acked == first
        second = await batches.take()
        assert [each.offset for each in second] == [4, 5]

    asyncio.run(scenario())


def test_messages_taken_while_the_worker_recovers_are_dropped_unacknowledged_and_fetched_again():
    async def scenario():
        intake, tracked, acked, rewinds = Intake(max_buffered=100), [], [], []
        app = fake_app(tracked, acked, rewinds)
        app.flow_control = SimpleNamespace(is_active=lambda: False)
        for offset, partition in ((7, 0), (8, 0), (3, 1)):
            intake.put(message(offset, partition=partition))
        batches = MessageBatches(app, intake, max_events=10, within_s=0.01)
        assert await batches.take() == []
        assert acked == [] and tracked == [] and len(intake) == 0
        assert rewinds == [{("events", 0): 7, ("events", 1): 3}]

    asyncio.run(scenario())


def test_messages_taken_before_the_seek_of_their_generation_are_dropped_and_fetched_again():
    # Faust resumes fetching, and a recovery opens the flow, before it seeks to the committed offsets.
    async def scenario():
        intake, tracked, acked, rewinds = Intake(max_buffered=100), [], [], []
        app = fake_app(tracked, acked, rewinds)
        app.consumer.seeked_generation = 0  # generation 1's seek is not done yet
        for offset in (280, 282):
            intake.put(message(offset))
        batches = MessageBatches(app, intake, max_events=10, within_s=0.01)
        assert await batches.take() == []
        assert acked == [] and tracked == [] and rewinds == [{("events", 0): 280}]
        app.consumer.seeked_generation = 1
        intake.put(message(0))
        assert [m.offset for m in await batches.take()] == [0]

    asyncio.run(scenario())


def test_after_a_stale_message_its_partitions_later_messages_wait_to_be_fetched_again_in_order():
    async def scenario():
        intake, tracked, acked, rewinds = Intake(max_buffered=100), [], [], []
        for each in (message(5, generation=0), message(6), message(2, partition=1), message(7), message(3, partition=1)):
            intake.put(each)
        batches = MessageBatches(fake_app(tracked, acked, rewinds), intake, max_events=3, within_s=0.01)
        batch = await batches.take()
        assert rewinds == [{("events", 0): 5}]
        # offset 6 of partition 0 is dropped with the stale 5 (both fetched again, 5 first); partition 1 goes on
        assert [(m.tp[1], m.offset) for m in batch] == [(1, 2)]
        assert [(m.tp[1], m.offset) for m in intake.take(10)] == [(1, 3)]  # 7 of partition 0 discarded too

    asyncio.run(scenario())


def test_a_stale_message_a_seek_already_covers_drops_nothing_else():
    async def scenario():
        intake = Intake(max_buffered=100)
        for each in (message(5, generation=0), message(6)):
            intake.put(each)
        batches = MessageBatches(fake_app([], [], [], rewound=False), intake, max_events=10, within_s=0.01)
        assert [m.offset for m in await batches.take()] == [6]

    asyncio.run(scenario())


def test_a_cleared_intake_reports_each_partitions_first_dropped_offset():
    dropped = []
    intake = Intake(max_buffered=100, on_drop=dropped.append)
    for offset, partition in ((4, 0), (5, 0), (9, 1)):
        intake.put(message(offset, partition=partition))
    intake.clear()
    intake.clear()  # nothing dropped: not reported
    assert dropped == [{("events", 0): 4, ("events", 1): 9}]


def test_the_consumer_rewinds_only_assigned_partitions_it_handed_over_past_the_dropped_offset():
    from labelstore.processors.transport import Consumer

    seeks = []
    consumer = SimpleNamespace(assignment=lambda: {"a", "b", "c"}, _read_offset={"a": 10, "b": 3}, _expected={},
                               _thread=SimpleNamespace(seek=lambda tp, offset: seeks.append((tp, offset))))
    _delegate(consumer, Consumer)
    # a: handed over up to 10, 7 dropped -> back to 7; b: a seek went back to 3 already; c: position unknown;
    # d: not assigned any more
    rewound = Consumer.rewind(consumer, {"a": 7, "b": 5, "c": 1, "d": 2})
    assert rewound == {"a": 7} and seeks == [("a", 7)]
    # until offset 7 comes back, what comes of "a" was fetched before the seek
    assert consumer._read_offset["a"] is None and consumer._expected == {"a": 7}


def test_a_seek_runs_on_the_consumer_thread_not_on_the_callers():
    """aiokafka's fetcher walks its fetched records on the consumer's thread; a seek from another
    thread raced it (KeyError in fetched_records)."""
    import asyncio
    import threading

    from labelstore.processors.transport import Consumer

    loop = asyncio.new_event_loop()
    consumer_thread = threading.Thread(target=loop.run_forever, daemon=True)
    consumer_thread.start()
    ran = threading.Event()
    seeks = []

    def seek(tp, offset):
        seeks.append((tp, offset, threading.current_thread()))
        ran.set()

    consumer = SimpleNamespace(assignment=lambda: {"a"}, _read_offset={"a": 10}, _expected={},
                               _thread=SimpleNamespace(seek=seek, thread_loop=loop))
    _delegate(consumer, Consumer)
    try:
        assert Consumer.rewind(consumer, {"a": 4}) == {"a": 4}
        assert ran.wait(5)
        assert seeks == [("a", 4, consumer_thread)]
    finally:
        loop.call_soon_threadsafe(loop.stop)
        consumer_thread.join(5)


def _delegate(consumer, cls) -> None:
    for name in ("_seek_event_partition", "_seek_if_assigned", "_on_consumer_thread"):
        setattr(consumer, name, getattr(cls, name).__get__(consumer))


def test_a_batch_of_a_worker_behind_waits_within_its_time_for_more_messages():
    async def scenario():
        intake = Intake(max_buffered=100)
        batches = MessageBatches(fake_app([], []), intake, max_events=10, within_s=0.2)
        intake.put(message(0, logged_s_ago=5.0))
        asyncio.get_running_loop().call_later(0.05, intake.put, message(1))
        assert [each.offset for each in await batches.take()] == [0, 1]

    asyncio.run(scenario())


def test_a_batch_of_a_worker_keeping_up_is_what_is_waiting_and_nothing_more():
    async def scenario():
        intake = Intake(max_buffered=100)
        batches = MessageBatches(fake_app([], []), intake, max_events=10, within_s=0.2)
        intake.put(message(0, logged_s_ago=0.01))
        asyncio.get_running_loop().call_later(0.05, intake.put, message(1, logged_s_ago=0.0))
        assert [each.offset for each in await batches.take()] == [0]
        assert [each.offset for each in await batches.take()] == [1]

    asyncio.run(scenario())


def test_the_idle_callback_runs_when_no_message_comes_and_a_late_message_still_arrives():
    async def scenario():
        intake, idled = Intake(max_buffered=100), []

        async def on_idle():
            idled.append(True)
            intake.put(message(9))

        batches = MessageBatches(fake_app([], []), intake, max_events=10, within_s=0.01, on_idle=on_idle)
        batch = await batches.take()
        assert idled == [True] and [each.offset for each in batch] == [9]

    asyncio.run(scenario())


def test_a_full_intake_makes_room_once_taken_from_and_is_emptied_by_clear():
    async def scenario():
        intake = Intake(max_buffered=2)
        intake.put(message(0))
        intake.put(message(1))
        assert intake.full
        room = asyncio.ensure_future(intake.room())
        await asyncio.sleep(0.01)
        assert not room.done()
        assert [each.offset for each in intake.take(1)] == [0]
        await asyncio.wait_for(room, 1)
        intake.clear()
        assert len(intake) == 0 and not intake.full

    asyncio.run(scenario())


def test_a_batch_given_back_is_no_longer_tracked_and_is_fetched_again_with_what_followed_it():
    async def scenario():
        intake, tracked, acked, rewinds = Intake(max_buffered=100), [], [], []
        app = fake_app(tracked, acked, rewinds)
        app.consumer._unacked_messages = set()
        app.consumer.track_message = app.consumer._unacked_messages.add
        for offset in (4, 5, 6):
            intake.put(message(offset))
        batches = MessageBatches(app, intake, max_events=2, within_s=0.01)
        batch = await batches.take()
        assert app.consumer._unacked_messages == set(batch)
        batches.give_back(batch)
        # A tracked message never acknowledged held Faust's revocation (wait_empty) for good.
        assert app.consumer._unacked_messages == set() and acked == []
        assert rewinds == [{("events", 0): 4}] and len(intake) == 0

    asyncio.run(scenario())
