"""Micro-batches of an agent's events, taken from its channel's queue in bulk.

Faust's ``Stream`` hands events over one at a time, and each costs a turn of the event loop
(``await sleep(0)``), sensor calls and a trace context: with thousands of events per second that
machinery, not the processing, fills the worker's only core. A batch here is everything already
in the queue (up to ``max_events``), or, when the queue runs dry, what arrives within
``within_s``. Each event is tracked and acknowledged through the consumer's own calls, so offsets
are committed exactly as a stream would commit them: only after the batch's work is done.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

import faust
from faust.types import EventT


IDLE_AFTER_S = 0.1


class EventBatches:
    """``take()`` gives the next micro-batch (``None`` when the stream stops); ``ack(events)`` once
    its work is done. A batch never acknowledged is never committed: a restarted worker processes
    it again."""

    def __init__(self, stream: faust.StreamT, max_events: int, within_s: float,
                 on_idle: Callable[[], Awaitable[None]] | None = None) -> None:
        self.on_idle = on_idle  # awaited when no event came for IDLE_AFTER_S
        self.app = stream.app
        self.channel = stream.channel
        self.queue = stream.channel.queue
        self.max_events = max_events
        self.within_s = within_s

    async def take(self) -> list[EventT] | None:
        try:
            taken = await self._take()
        except StopAsyncIteration:  # the agent is stopping
            return None
        current = []
        for event in taken:
            if self._is_current(event):
                current.append(event)
            else:  # as Faust's streams do: skipped, and acknowledged
                event.ack()
        return current

    @staticmethod
    def ack(events: Sequence[EventT]) -> None:
        for event in events:
            event.ack()

    async def _take(self) -> list[EventT]:
        queue, loop = self.queue, asyncio.get_running_loop()
        events = [await self._first()]
        deadline = loop.time() + self.within_s
        while len(events) < self.max_events:
            if not queue.empty():
                events.append(queue.get_nowait())
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                events.append(await asyncio.wait_for(self.channel.get(), remaining))
            except TimeoutError:
                break
        consumer = self.app.consumer
        for event in events:
            consumer.track_message(event.message)
        return events

    async def _first(self) -> EventT:
        if not self.queue.empty() or self.on_idle is None:
            return await self.channel.get()
        try:
            return await asyncio.wait_for(self.channel.get(), IDLE_AFTER_S)
        except TimeoutError:
            await self.on_idle()
            return await self.channel.get()

    def _is_current(self, event: EventT) -> bool:
        # Events fetched before a rebalance (another generation) or while the worker is
        # recovering are not for this agent to process; Faust's streams skip them too.
        message = event.message
        return self.app.flow_control.is_active() and message.generation_id == self.app.consumer_generation_id
