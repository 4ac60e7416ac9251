"""Micro-batches taken from a topic's intake: sizes, stale messages, idling, back-pressure."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

from labelstore.processors.batches import MessageBatches
from labelstore.processors.transport import Intake


def message(offset: int, generation: int = 1, logged_s_ago: float = 5.0) -> SimpleNamespace:
    return SimpleNamespace(offset=offset, generation_id=generation, timestamp=time.time() - logged_s_ago)


def fake_app(tracked: list, acked: list) -> SimpleNamespace:
    consumer = SimpleNamespace(track_message=tracked.append, ack=acked.append)
    return SimpleNamespace(consumer=consumer, consumer_generation_id=1,
                           flow_control=SimpleNamespace(is_active=lambda: True))


def test_a_batch_is_what_is_waiting_up_to_the_maximum_and_stale_messages_are_never_acknowledged():
    async def scenario():
        intake, tracked, acked = Intake(max_buffered=100), [], []
        messages = [message(0), message(1, generation=0), *(message(offset) for offset in range(2, 6))]
        for each in messages:
            intake.put(each)
        batches = MessageBatches(fake_app(tracked, acked), intake, max_events=4, within_s=0.01)
        first = await batches.take()
        assert [each.offset for each in first] == [0, 2, 3]  # 4 taken, 1 of an older generation
        # Acknowledged, the stale message would let a commit pass over an event never processed.
        assert acked == [] and tracked == first
        batches.ack(first)
        assert acked == first
        second = await batches.take()
        assert [each.offset for each in second] == [4, 5]

    asyncio.run(scenario())


def test_messages_taken_while_the_worker_recovers_are_dropped_unacknowledged():
    async def scenario():
        intake, tracked, acked = Intake(max_buffered=100), [], []
        app = fake_app(tracked, acked)
        app.flow_control = SimpleNamespace(is_active=lambda: False)
        for offset in range(3):
            intake.put(message(offset))
        batches = MessageBatches(app, intake, max_events=10, within_s=0.01)
        assert await batches.take() == []
        assert acked == [] and tracked == [] and len(intake) == 0

    asyncio.run(scenario())


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
