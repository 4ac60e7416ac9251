"""Micro-batches of an agent's messages, taken from its topic's intake in bulk.

Faust's ``Stream`` hands events over one at a time, and each costs a turn of the event loop
(``await sleep(0)``), sensor calls and a trace context: with thousands of events per second that
machinery, not the processing, fills the worker's only core. A batch here is everything already
in the intake (up to ``max_events``): events gather while the previous batch is processed, so
batches grow with the load. Only when the worker is behind (the newest event taken was logged
more than ``BEHIND_S`` ago: a backlog, a restart) does a short batch wait up to ``within_s`` for
more, as larger batches then catch up faster; at a steady rate waiting would only add latency.
Each message is tracked and acknowledged through the consumer's own calls, so offsets are
committed exactly as a stream would commit them: only after the batch's work is done.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from faust.types import Message

from labelstore.processors.transport import Intake, first_offsets

IDLE_AFTER_S = 0.1
BEHIND_S = 0.1  # compares log-append times with this worker's clock: assumes they roughly agree


class MessageBatches:
    """``take()`` gives the next micro-batch; ``ack(messages)`` once its work is done. A batch never
    acknowledged is never committed: a restarted worker processes it again."""

    def __init__(self, app: Any, intake: Intake, max_events: int, within_s: float,
                 on_idle: Callable[[], Awaitable[None]] | None = None) -> None:
        self.on_idle = on_idle  # awaited when no message came for IDLE_AFTER_S
        self.app = app
        self.intake = intake
        self.max_events = max_events
        self.within_s = within_s

    async def take(self) -> list[Message]:
        taken = await self._take()
        # Messages fetched before a rebalance (another generation) or while the worker is
        # recovering are not for this agent: dropped, neither processed nor acknowledged, and
        # fetched again (``Consumer.rewind``; a seek to the committed offsets may do it first).
        # Acknowledging them, as Faust's streams do, let the next commit pass over events nobody
        # processed: a worker restarted after SIGKILL lost them (their label versions missing)
        # and folded the entities' later events onto states without them.
        consumer = self.app.consumer
        generation, track = self.app.consumer_generation_id, consumer.track_message
        if not self.app.flow_control.is_active() or consumer.seeked_generation != generation:
            # A recovery opens the flow before the seek to the committed offsets (Consumer.perform_seek).
            consumer.rewind(first_offsets(taken))
            return []
        current = [message for message in taken if message.generation_id == generation]
        if len(current) < len(taken):
            rewound = self._fetch_again([m for m in taken if m.generation_id != generation])
            if rewound:  # their later messages too: fetched again after the rewound ones, in order
                current = [m for m in current if not (m.tp in rewound and m.offset >= rewound[m.tp])]
        for message in current:
            track(message)
        return current

    def give_back(self, messages: Sequence[Message]) -> None:
        """Drop a batch taken but not to be processed now: it is fetched again, in order."""
        consumer = self.app.consumer
        for message in messages:
            # Taken messages are tracked, and Faust gives a partition away only once every
            # tracked message is acknowledged: kept, they held a rebalance for good.
            consumer._unacked_messages.discard(message)
        self._fetch_again(messages)

    def _fetch_again(self, messages: Sequence[Message]) -> dict:
        """Rewind the messages' partitions to the first of them, and drop the later messages of
        those partitions waiting in the intake: each partition is fetched again in order."""
        rewound = self.app.consumer.rewind(first_offsets(messages))
        if rewound:
            self.intake.discard(rewound)
        return rewound

    def ack(self, messages: Sequence[Message]) -> None:
        ack = self.app.consumer.ack
        for message in messages:
            ack(message)

    async def _take(self) -> list[Message]:
        intake, loop = self.intake, asyncio.get_running_loop()
        await self._first()
        messages = intake.take(self.max_events)
        if not messages or messages[-1].timestamp > time.time() - BEHIND_S:
            return messages
        deadline = loop.time() + self.within_s
        while len(messages) < self.max_events:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                await asyncio.wait_for(intake.arrival(), remaining)
            except TimeoutError:
                break
            messages.extend(intake.take(self.max_events - len(messages)))
        return messages

    async def _first(self) -> None:
        if len(self.intake) or self.on_idle is None:
            await self.intake.arrival()
            return
        try:
            await asyncio.wait_for(self.intake.arrival(), IDLE_AFTER_S)
        except TimeoutError:
            await self.on_idle()
            await self.intake.arrival()
