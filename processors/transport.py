"""Faust's aiokafka transport, handing fetched messages over without asyncio tasks per message.

Faust's consumer hands each fetched message to the conductor inside
``Service.wait_first(callback(message), suspend_flow.wait())``: four futures, two tasks and an
``asyncio.wait`` per message, so that a hand-over blocked by back-pressure can be abandoned when
a rebalance suspends the flow. With an empty agent that machinery was the largest share of the
worker's CPU. Nearly every hand-over finishes without suspending (the flow is open, the agent's
queue has room), so this consumer runs the callback's coroutine directly and falls back to
Faust's ``wait_first`` only when the coroutine suspends: the same callback, the same order, the
same bookkeeping, the cost of a task only when it is needed.

A topic with an ``Intake`` (the processor's raw event topics) skips the conductor altogether: its
messages go straight into the intake, which the agent empties in micro-batches
(``processors.batches``). The conductor's work per message (flow-control and producer waits, an
``Event``, a deserializer call, a queue put with pressure callbacks) serves typed streams, and
the processor reads raw bytes in bulk.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Coroutine, Generator, Iterable, Mapping, Sequence
from typing import Any

import faust
from aiokafka.errors import IllegalStateError
from faust import tables as faust_tables
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from mode.utils.queues import ThrowableQueue

from labelstore.processors.health import FreezeGuard, Progress

log = logging.getLogger(__name__)
CLIENT_ID_PREFIX = "labelstore-processor@"


class Consumer(faust_aiokafka.Consumer):
    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - runs in every worker test
        # Faust's loop (faust/transport/consumer.py), with ``_hand_over`` instead of ``wait_first``.
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        read_offset = self._read_offset
        acks_enabled_for = self.app.topics.acks_enabled_for
        intakes = self.app.intakes
        expected = self._expected
        since_yield = 0
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                self.diag.set_flag(CONSUMER_FETCHING)
                self._fetched_changelogs = FetchedChangelogs({})
                messages = self.getmany(timeout=1.0)
                await self.sleep(0)
                if self.should_stop:
                    continue
                async for tp, message in messages:
                    since_yield += 1
                    if since_yield > 100:  # let the agents run between long runs of hand-overs
                        await asyncio.sleep(0)
                        since_yield = 0
                    offset, last = message.offset, read_offset[tp]
                    fetched = self._fetched_changelogs
                    changelog = fetched.take(tp, offset)
                    if changelog is False:
                        continue  # fetched before a seek, or after a dropped record of its partition
                    if changelog is None and last is not None and offset < last:
                        continue  # already handed over before a seek
                    if last and offset - last > 1 and acks_enabled_for(message.topic):
                        await self._add_gap(tp, last + 1, offset)
                    if self._commit_every is not None and self._n_acked >= self._commit_every:
                        self._n_acked = 0
                        await self.commit()
                    intake = intakes.get(message.topic)
                    if changelog:
                        await self._hand_over_changelog(message, fetched.seeks)
                    elif intake is None:
                        await self._hand_over(message)
                    else:
                        if intake.full:  # back-pressure, abandoned like a hand-over if the flow is suspended
                            await self.wait_first(intake.room(), self.suspend_flow.wait())
                        if tp in expected:
                            if offset != expected[tp]:
                                continue  # fetched before the partition's last seek: it is fetched again
                            del expected[tp]
                        intake.put(message)
                    read_offset[tp] = offset
                self.changelogs_discarded(self._fetched_changelogs.dropped())
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise
        except Exception:
            log.exception("handing over fetched messages failed")
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # TP -> the offset a seek moved it to. Until a message with that offset comes, what comes
        # was fetched before the seek (a fetch returns after it, a fetched round is still being
        # handed over) and is dropped: handed over, it was processed ahead of the messages the seek
        # went back for, which were then skipped as replays.
        self._expected: dict[Any, int] = {}
        # The generation whose seek to the committed offsets is done: before it, an agent takes
        # nothing (``processors.batches``).
        self.seeked_generation: int | None = None
        self._fetched_changelogs = FetchedChangelogs({})
        # Changelog seeks, Faust's (the recovery's) and this consumer's rewinds, numbered in one
        # sequence. A fetch asked for before a partition's last seek may return records from
        # where the partition was before it, or (waiting across the seek) from where it went:
        # neither may reach the recovery before the records the seek is for.
        self._seeks = 0
        self._sought_at: dict[Any, int] = {}  # TP -> the number of its last seek
        self._sought_to: dict[Any, int] = {}  # TP -> the offset of Faust's last seek of it
        self._requested_at = 0  # the number reached when the fetch being waited for was asked for

    async def seek_wait(self, partitions: Mapping[Any, int]) -> None:
        self._seeks += 1
        self._sought_at.update(dict.fromkeys(partitions, self._seeks))
        self._sought_to.update(partitions)
        # What the changelog queue holds of these partitions was fetched from where they were:
        # Faust drops it at its next resume of the flow, but the recovery could read it first.
        queue = self._changelog_queue()
        if queue is not None:
            for tp in partitions:
                queue.discard(tp, 0)
        await super().seek_wait(partitions)

    async def _getmany(self, active_partitions: Any, timeout: float) -> Any:
        # A seek asked for before this is queued on the consumer's thread before the fetch.
        self._requested_at = self._seeks
        return await super()._getmany(active_partitions, timeout)

    async def _wait_next_records(self, timeout: float) -> tuple[Any, Any]:
        records, active_partitions = await super()._wait_next_records(timeout)
        changelogs = self.app.tables.changelog_topics
        self._fetched_changelogs = FetchedChangelogs(
            {tp: batch for tp, batch in (records or {}).items() if tp.topic in changelogs},
            seeks=self._requested_at, sought_at=self._sought_at)
        return records, active_partitions

    def _changelog_queue(self) -> ChangelogQueue | None:
        queue = getattr(self.app.tables, "_changelog_queue", None)
        return queue if isinstance(queue, ChangelogQueue) else None

    async def _hand_over_changelog(self, message: Any, seeks: int) -> None:
        tp, offset = message.tp, message.offset
        if not await self._hand_over(message):
            self.changelogs_discarded({tp: offset})  # abandoned for a rebalance: never queued
        elif self._sought_at.get(tp, 0) > seeks:
            # Sought while it was being queued (it waited for room or for the flow): it would
            # reach the recovery ahead of the records the seek is for.
            queue = self._changelog_queue()
            if queue is not None:
                queue.discard(tp, offset)
            self.changelogs_discarded({tp: offset})

    def changelogs_discarded(self, dropped: Mapping[Any, int]) -> None:
        """Fetch each changelog partition in ``dropped`` again from its offset there, the first of
        its records that left aiokafka and will not reach the recovery.

        Whoever dropped them: Faust's ``getmany`` (the flow stopped, the partition paused, the
        active set empty across a rebalance), a hand-over abandoned for a rebalance, the
        changelog queue cleared when Faust resumes the flow (its waiting put cancelled with it),
        or this consumer, for records fetched before a seek. A recovery skips every record at or
        below the last offset it has seen, so the partition's records already fetched after them
        are dropped too (``FetchedChangelogs``): the recovery reads each changelog partition in
        log order, without a gap. Without it a standby went on after the records that the end of
        a recovery cleared from the queue (3,448 in one scale-out run), and a RocksDB store saved
        an offset past records it never applied: promoted, it would have started from there,
        their keys' states missing.

        Nothing is done for records below Faust's last seek of the partition: the recovery reads
        from there (a RocksDB store's recovery seeks past what its data directory holds)."""
        if self.should_stop or getattr(self.app, "should_stop", False):
            return  # the worker is stopping: Faust clears the queue on its way out
        for tp, first in dropped.items():
            if first < self._sought_to.get(tp, -1):
                continue
            self._forget_fetched(tp, first)  # behind the gap: they come again, after the records before them
            self._on_consumer_thread(self._rewind_changelog, tp, first)

    def _forget_fetched(self, tp: Any, since: int) -> None:
        """Count a seek of changelog partition ``tp`` to ``since``: what was fetched of it before, and
        what its queue holds from ``since`` on, must not reach the recovery ahead of the records the
        seek is for."""
        self._seeks += 1
        self._sought_at[tp] = self._seeks
        queue = self._changelog_queue()
        if queue is not None:
            queue.discard(tp, since)

    def _rewind_changelog(self, tp: Any, first: int) -> None:
        """On the consumer's thread, so that nothing is fetched for ``tp`` between the check and the seek."""
        if first < self._sought_to.get(tp, -1):
            return  # Faust sought past the records since: the recovery wants it there
        position = self._fetch_position(tp)
        if position is None or position <= first:
            return  # revoked, or not past the records (a seek, an earlier rewind, took it back)
        try:
            self._thread.seek(tp, first)
        except IllegalStateError:
            return
        # Routine at a rebalance (most often before the recovery's own seek, which then wins).
        log.info("changelog %s/%s: records from %d were fetched and dropped; fetching them again",
                 tp.topic, tp.partition, first)

    def _fetch_position(self, tp: Any) -> int | None:
        """Where aiokafka fetches ``tp`` next (None if unassigned or not known yet); on the consumer's thread."""
        consumer = getattr(self._thread, "_consumer", None)
        subscription = consumer._subscription.subscription if consumer is not None else None
        assignment = subscription.assignment if subscription is not None else None
        state = assignment.state_value(tp) if assignment is not None else None
        return state.position if state is not None and state.has_valid_position else None

    def rewind(self, dropped: dict[Any, int]) -> dict[Any, int]:
        """Fetch again from ``dropped[tp]``, the first of ``tp``'s messages that were handed over
        and then dropped unprocessed (an intake cleared, a batch's stale messages).

        Without it the fetcher went on after them: they were never processed unless a seek to the
        committed offsets came later, and the next events of their entities were folded onto
        states without them. Nothing is done for a partition no longer assigned, or whose position
        a seek already moved back before the dropped message (it is fetched again anyway).
        Returns the partitions rewound, with their offsets."""
        assigned, rewound = self.assignment(), {}
        for tp, offset in dropped.items():
            last = self._read_offset.get(tp)
            if tp not in assigned or last is None or last < offset:
                continue
            self._seek_event_partition(tp, offset)
            rewound[tp] = offset
        return rewound

    def reread(self, tp: Any, offset: int) -> None:
        """Fetch changelog partition ``tp`` again from ``offset``, and hand it over (``health.nudge_recovery``)."""
        self.resume_partitions({tp})
        self._read_offset[tp] = None
        self._forget_fetched(tp, offset)
        self._on_consumer_thread(self._seek_if_assigned, tp, offset)

    def _seek_event_partition(self, tp: Any, offset: int) -> None:
        self._on_consumer_thread(self._seek_if_assigned, tp, offset)
        self._read_offset[tp] = None
        self._expected[tp] = offset

    def _seek_if_assigned(self, tp: Any, offset: int) -> None:
        try:
            self._thread.seek(tp, offset)
        except IllegalStateError:
            pass  # revoked before the seek ran: its next owner starts from the committed offset

    def _on_consumer_thread(self, function: Callable[..., None], *args: Any) -> None:
        """Run ``function`` on the thread aiokafka's consumer runs on, between its fetcher's steps.

        aiokafka's seek drops the partition's fetched records from a dict that ``fetched_records``
        walks on that thread; called from this one (as Faust calls it), the two raced: a KeyError
        in ``fetched_records`` ended workers (seen on a worker joining a group, and after a pause).
        Not waited for: the consumer thread may itself be waiting on this loop during a rebalance.
        Records fetched before the seek runs are dropped by ``_expected`` (``_drain_messages``); a
        record handed over twice at the seek's offset is skipped by the fold as a replay."""
        loop = getattr(self._thread, "thread_loop", None)
        if loop is None or not loop.is_running():
            function(*args)
        else:
            loop.call_soon_threadsafe(function, *args)

    async def perform_seek(self) -> None:
        """Faust's seek to the committed offsets, made exact for the event partitions.

        Faust (through aiokafka) seeks only partitions with a committed offset above 0; the others
        stayed where the fetcher got to, past any message the agents dropped unprocessed when the
        flow was suspended (``processors.batches``): their committed position is their start.
        Faust resumes fetching before it seeks, and during a recovery the flow is open: what was
        fetched meanwhile (from wherever the fetcher was) is dropped, in the intake and in flight,
        and the agents take nothing of this generation before the seek is done. Seen in a chaos
        run: a partition's offsets 280-283 folded first, then 0-279 from the seek, 138 and 152
        skipped as replays of entities already folded past them (their label versions lost)."""
        generation = self.app.consumer_generation_id
        await super().perform_seek()
        intakes = self.app.intakes
        events = [tp for tp in self.assignment() if tp.topic in intakes]
        uncommitted = [tp for tp in events if not self._committed_offset.get(tp)]
        starts = await self.earliest_offsets(*uncommitted) if uncommitted else {}
        for tp in events:
            self._seek_event_partition(tp, self._committed_offset.get(tp) or starts.get(tp, 0))
        for intake in intakes.values():
            intake.discard({tp: 0 for tp in events})
        if self.app.consumer_generation_id == generation:
            self.seeked_generation = generation

    def ack(self, message: Any) -> bool:
        acked = super().ack(message)
        if acked:
            self.app.progress.acknowledged(message.topic, message.partition, message.offset)
        return acked

    async def _hand_over(self, message: Any) -> bool:
        """Whether the hand-over finished (False: abandoned, the message never reached its queue)."""
        handing_over = self.callback(message)
        try:
            waiting_for = handing_over.send(None)
        except StopIteration:
            return True
        # Suspended (back-pressure or a paused flow): finish it as Faust does, abandoning it if
        # the flow is suspended for a rebalance meanwhile.
        resumed = _Resumed(handing_over, waiting_for)
        finished = await self.wait_first(resumed, self.suspend_flow.wait())
        return resumed in finished.done


class FetchedChangelogs:
    """The changelog records of one fetched batch, and how far each partition's were handed over.

    A partition's records are handed over only in log order from the first, and only if it was
    not sought (by Faust, or rewound by the consumer) since the batch was asked for: once one is
    missing (dropped by Faust's ``getmany``) or the partition was sought, the rest are dropped too
    and the partition is fetched again from the first not handed over
    (``Consumer.changelogs_discarded``). A recovery skips a record at or below the last offset it
    has seen, so an earlier record coming after a later one would be lost for good."""

    __slots__ = ("_offsets", "_next", "_broken", "_sought_at", "seeks")

    def __init__(self, records: Mapping[Any, Sequence[Any]], *, seeks: int = 0,
                 sought_at: Mapping[Any, int] | None = None) -> None:
        self.seeks = seeks  # the number of changelog seeks reached when the batch was asked for
        self._sought_at = {} if sought_at is None else sought_at  # TP -> the number of its last seek, kept current
        self._offsets = {tp: [record.offset for record in batch] for tp, batch in records.items() if batch}
        self._next = dict.fromkeys(self._offsets, 0)
        self._broken: set = set()

    def take(self, tp: Any, offset: int) -> bool | None:
        """Whether the record of ``tp`` at ``offset`` may be handed over; None if the batch has no
        changelog records of ``tp`` (another topic's partition: not its business)."""
        offsets = self._offsets.get(tp)
        if offsets is None:
            return None
        position = self._next[tp]
        if (tp in self._broken or self._sought_at.get(tp, 0) > self.seeks
                or position >= len(offsets) or offsets[position] != offset):
            self._broken.add(tp)
            return False
        self._next[tp] = position + 1
        return True

    def dropped(self) -> dict[Any, int]:
        """Each partition's first record not handed over."""
        return {tp: offsets[self._next[tp]] for tp, offsets in self._offsets.items() if self._next[tp] < len(offsets)}


class _Resumed:
    """An awaitable that continues a coroutine already started and now suspended on ``waiting_for``."""

    __slots__ = ("coroutine", "waiting_for")

    def __init__(self, coroutine: Coroutine, waiting_for: Any) -> None:
        self.coroutine, self.waiting_for = coroutine, waiting_for

    def __await__(self) -> Generator[Any, Any, Any]:
        coroutine, waiting_for = self.coroutine, self.waiting_for
        while True:
            try:
                sent = yield waiting_for
            except GeneratorExit:
                coroutine.close()
                raise
            except BaseException as exc:
                try:
                    waiting_for = coroutine.throw(exc)
                except StopIteration as done:
                    return done.value
            else:
                try:
                    waiting_for = coroutine.send(sent)
                except StopIteration as done:
                    return done.value


class Intake:
    """Fetched messages of one topic, waiting for the agent that reads it; at most ``max_buffered``
    before the consumer waits (as a full stream buffer makes it wait). Cleared with Faust's stream
    buffers when the flow resumes after a rebalance: what it held was fetched for an older
    assignment."""

    def __init__(self, max_buffered: int, on_drop: Callable[[dict], None] | None = None) -> None:
        self.max_buffered = max_buffered
        self.on_drop = on_drop  # given each partition's first offset dropped by ``clear``
        self._messages: deque = deque()
        self._arrived = asyncio.Event()
        self._emptied = asyncio.Event()

    def __len__(self) -> int:
        return len(self._messages)

    @property
    def full(self) -> bool:
        return len(self._messages) >= self.max_buffered

    def put(self, message: Any) -> None:
        self._messages.append(message)
        self._arrived.set()

    def take(self, limit: int) -> list:
        messages = self._messages
        taken = [messages.popleft() for _ in range(min(limit, len(messages)))]
        if not messages:
            self._arrived.clear()
        if len(messages) < self.max_buffered:
            self._emptied.set()
        return taken

    def discard(self, since: dict[Any, int]) -> None:
        """Drop the messages of each partition in ``since`` from its offset on (to be fetched again)."""
        kept = [m for m in self._messages if not (m.tp in since and m.offset >= since[m.tp])]
        if len(kept) < len(self._messages):
            self._messages = deque(kept)
            if not kept:
                self._arrived.clear()
            self._emptied.set()

    async def arrival(self) -> None:
        """Returns once a message is waiting."""
        await self._arrived.wait()

    async def room(self) -> None:
        while self.full:
            self._emptied.clear()
            await self._emptied.wait()

    def clear(self) -> None:
        dropped = first_offsets(self._messages)
        self._messages.clear()
        self._arrived.clear()
        self._emptied.set()
        if dropped and self.on_drop is not None:
            self.on_drop(dropped)


def first_offsets(messages: Iterable[Any]) -> dict[Any, int]:
    """Each partition's lowest offset among ``messages``."""
    first: dict[Any, int] = {}
    for message in messages:
        tp = message.tp
        if tp not in first or message.offset < first[tp]:
            first[tp] = message.offset
    return first


class ChangelogQueue(ThrowableQueue):
    """Faust's changelog queue (between the hand-over and the recovery), telling ``on_drop`` what it
    drops: each partition's first record cleared when Faust resumes the flow, and a record whose
    put waiting for room the clear cancelled.

    Faust clears the queue at every resume of the flow so that records fetched before its seeks
    are not recovered after them; it clears every other partition's too. The resume at the end of
    a recovery cleared the records of standby partitions, whose fetch went on after them."""

    def __init__(self, *args: Any, on_drop: Callable[[dict], None] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.on_drop = on_drop  # given each partition's first offset dropped

    async def put(self, value: Any) -> None:
        try:
            await super().put(value)
        except asyncio.CancelledError:
            self._dropped(first_offsets([value.message]))
            raise

    def clear(self) -> None:
        dropped = first_offsets(event.message for event in self._queue)
        super().clear()
        self._dropped(dropped)

    def discard(self, tp: Any, since: int) -> None:
        """Drop ``tp``'s records from offset ``since`` on, silently (they are fetched again, or stale)."""
        queue = self._queue
        kept = [event for event in queue if not (event.message.tp == tp and event.message.offset >= since)]
        freed = len(queue) - len(kept)
        if freed:
            queue.clear()
            queue.extend(kept)
            for _ in range(freed):
                self._wakeup_next(self._putters)

    def _dropped(self, dropped: dict) -> None:
        if dropped and self.on_drop is not None:
            try:
                self.on_drop(dropped)
            except Exception:  # noqa: BLE001  (Faust's clear must finish: its resume depends on it)
                log.exception("fetching dropped changelog records again failed: %s", dropped)


class TableManager(faust_tables.TableManager):
    """Faust's table manager with a ``ChangelogQueue``, whose drops the consumer fetches again."""

    @property
    def changelog_queue(self) -> ThrowableQueue:
        if self._changelog_queue is None:
            self._changelog_queue = ChangelogQueue(maxsize=self.app.conf.stream_buffer_maxsize,
                                                   flow_control=self.app.flow_control, clear_on_resume=True,
                                                   on_drop=self._changelogs_dropped)
        return self._changelog_queue

    def _changelogs_dropped(self, dropped: dict) -> None:
        fetch_again = getattr(self.app.consumer, "changelogs_discarded", None)
        if fetch_again is not None:
            fetch_again(dropped)


class Transport(faust_aiokafka.Transport):
    Consumer = Consumer


class App(faust.App):
    """A Faust app whose aiokafka transport is the one above (other transports as configured), with
    an ``Intake`` for each topic an agent reads in bulk, the worker's ``Progress``, and a table
    manager whose changelog queue reports what it drops."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # The group's members name their web address: `labelstore status` asks each for its /status.
        kwargs.setdefault("broker_client_id", f"{CLIENT_ID_PREFIX}{kwargs.get('web_host')}:{kwargs.get('web_port')}")
        kwargs.setdefault("TableManager", TableManager)
        super().__init__(*args, **kwargs)
        self.intakes: dict[str, Intake] = {}
        self.progress = Progress()
        self.freeze_guard = FreezeGuard(self.conf.broker_session_timeout, lambda: self.consumer_generation_id)

    def intake(self, topic: str) -> Intake:
        """The intake of ``topic``'s messages (made on first use; before the worker starts, so no
        message of it goes to the conductor)."""
        if topic not in self.intakes:
            self.intakes[topic] = Intake(self.conf.stream_buffer_maxsize,
                                         on_drop=lambda dropped: self.consumer.rewind(dropped))
            self.flow_control.manage_queue(self.intakes[topic])
        return self.intakes[topic]

    def _new_transport(self) -> Any:
        if self.conf.broker_consumer[0].scheme == "kafka":
            return Transport(self.conf.broker_consumer, self)
        return super()._new_transport()
