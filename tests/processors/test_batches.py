"""Micro-batches taken from an agent's channel: sizes, stale events, idling."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from processors.batches import EventBatches


class FakeEvent:
    def __init__(self, offset: int, generation: int = 1) -> None:
        self.message = SimpleNamespace(offset=offset, generation_id=generation)
        self.acked = False

    def ack(self) -> None:
        self.acked = True


class FakeChannel:
    def __init__(self) -> None:
        self.queue = asyncio.Queue()

    async def get(self):
        return await self.queue.get()


def fake_stream(channel: FakeChannel, tracked: list) -> SimpleNamespace:
    app = SimpleNamespace(consumer=SimpleNamespace(track_message=tracked.append), consumer_generation_id=1,
                          flow_control=SimpleNamespace(is_active=lambda: True))
    return SimpleNamespace(app=app, channel=channel)


def test_a_batch_is_what_is_queued_up_to_the_maximum_and_stale_events_are_acknowledged_unprocessed():
    async def scenario():
        channel, tracked = FakeChannel(), []
        events = [FakeEvent(0), FakeEvent(1, generation=0), *(FakeEvent(offset) for offset in range(2, 6))]
        for event in events:
            channel.queue.put_nowait(event)
        batches = EventBatches(fake_stream(channel, tracked), max_events=4, within_s=0.01)
        first = await batches.take()
        assert [event.message.offset for event in first] == [0, 2, 3]  # 4 taken, 1 stale
        assert events[1].acked and not any(event.acked for event in first)
        assert len(tracked) == 4
        batches.ack(first)
        assert all(event.acked for event in first)
        second = await batches.take()
        assert [event.message.offset for event in second] == [4, 5]

    asyncio.run(scenario())


def test_the_idle_callback_runs_when_no_event_comes_and_a_late_event_still_arrives():
    async def scenario():
        channel, idled = FakeChannel(), []

        async def on_idle():
            idled.append(True)
            channel.queue.put_nowait(FakeEvent(9))

        batches = EventBatches(fake_stream(channel, []), max_events=10, within_s=0.01, on_idle=on_idle)
        batch = await batches.take()
        assert idled == [True] and [event.message.offset for event in batch] == [9]

    asyncio.run(scenario())
