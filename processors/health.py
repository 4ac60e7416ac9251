"""Is the worker alive, ready and moving? And if it has work but does not move: exit, loudly.

A stuck worker is the worst failure a label store can have: its latest labels go stale and
nothing says so. ``Progress`` records when this worker last moved (state recovered, events
acknowledged after processing). ``Watchdog`` knows whether it has work: recovering its state, or
owning event partitions whose end offset is beyond what it processed (asked of the brokers, not of
Faust's consumer, which may be the stuck part). With work and no move for ``stall_timeout_s``,
or with its event loop blocked that long, the worker writes every thread's stack and its
consumer's state to its log and exits with ``STALLED_EXIT_CODE``: its supervisor restarts it,
and nothing is lost (offsets are committed only after the outputs are durable).
"""

from __future__ import annotations

import asyncio
import faulthandler
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from labelstore.connection import bootstrap_servers
from labelstore.events.admin import end_offsets
from labelstore.processors.diagnostics import consumer_state, describe
from labelstore.settings import Settings

log = logging.getLogger("labelstore.health")
STALLED_EXIT_CODE = 71
CHECK_EVERY_S = 5.0
FROZEN_AFTER_S = 5.0  # the judge sleeps 1 s; a much longer gap means the process was frozen
NUDGE_AFTER_S = 30.0  # Faust warns of a recovery partition that received nothing after 30 s


@dataclass
class Progress:
    """When this worker last moved, and how far it processed each partition (the next offset)."""

    moved_at: float = field(default_factory=time.monotonic)
    processed: dict[tuple[str, int], int] = field(default_factory=dict)

    def moved(self) -> None:
        self.moved_at = time.monotonic()

    @property
    def moved_at_wall(self) -> float:
        return time.time() - (time.monotonic() - self.moved_at)

    def acknowledged(self, topic: str, partition: int, offset: int) -> None:
        self.processed[topic, partition] = max(self.processed.get((topic, partition), 0), offset + 1)
        self.moved()


class FreezeGuard:
    """Holds this worker's writes after it did not run for most of a session timeout.

    A process stopped (SIGSTOP, a suspended VM, a starved host) past its session timeout has lost
    its partitions to another worker, but it does not know yet when it runs again: the batch it
    held, or took from what it had fetched, would write label versions, latest labels and states
    after the new owner's newer ones (seen in a chaos run: labels.latest held older versions).
    The event loop ticks every ``TICK_S``; a gap of ``freeze_after_s`` between ticks, noticed
    by the tick or by a write that comes first, holds writes of messages of that generation
    until the group has moved on (a new generation: they are stale then) or for one more session
    timeout (the membership survived). Records already handed to the producer before the stop
    still go out: only a transaction fences those (``exactly_once``).
    """

    TICK_S = 0.5

    def __init__(self, session_timeout_s: float, current_generation: Callable[[], int]) -> None:
        self.session_timeout_s = session_timeout_s
        self.current_generation = current_generation
        self.freeze_after_s = session_timeout_s * 0.8
        self.last_tick = time.monotonic()
        self.held_generation = -1
        self.held_until = 0.0
        self._ticking: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Start ticking on the running event loop (once)."""
        if self._ticking is None:
            self.last_tick = time.monotonic()
            self._ticking = asyncio.get_running_loop().call_later(self.TICK_S, self._tick)

    def _tick(self) -> None:
        self._notice()
        self.last_tick = time.monotonic()
        self._ticking = asyncio.get_running_loop().call_later(self.TICK_S, self._tick)

    def _notice(self) -> None:
        now = time.monotonic()
        if now - self.last_tick > self.freeze_after_s and self.held_until < now:
            self.held_until = now + self.session_timeout_s
            self.held_generation = self.current_generation()
            log.warning("the worker did not run for %.1f s (session timeout %.0f s): its partitions may "
                        "have moved; writes of what it fetched before are held", now - self.last_tick,
                        self.session_timeout_s)

    def may_write(self, generation: int) -> bool:
        """Whether a batch of messages of ``generation`` may write its outputs now."""
        self._notice()
        return time.monotonic() >= self.held_until or generation > self.held_generation


@dataclass
class Assessment:
    """What the last check found. ``lag`` maps each owned "topic/partition" to its events not yet
    processed; ``lagging`` keeps those with any."""

    checked_at: float = 0.0
    recovering: bool = False
    lag: dict[str, int] = field(default_factory=dict)
    error: str | None = None

    @property
    def lagging(self) -> dict[str, int]:
        return {where: events for where, events in self.lag.items() if events > 0}

    @property
    def has_work(self) -> bool:
        return self.recovering or bool(self.lagging)


class Watchdog:
    """Judges on a thread of its own, so that a blocked event loop is caught too; the checks it
    asks for every ``CHECK_EVERY_S`` run on the event loop. Not on a Faust timer: Faust starts its
    timers only once the state is recovered, and a recovery that never ends is a stall to catch."""

    def __init__(self, app: Any, progress: Progress, end_offsets: Callable[[dict[str, list[int]]], dict],
                 stall_timeout_s: float, *, on_stall: Callable[[str], None] | None = None) -> None:
        self.app, self.progress, self._end_offsets = app, progress, end_offsets
        self.stall_timeout_s = stall_timeout_s
        self.assessment = Assessment(checked_at=time.monotonic())
        # When the event loop last started a check: what says it runs. A check's assessment comes
        # only after the brokers answered, seconds later on a loaded machine (an idle worker with
        # an 8 s stall timeout was once taken for a blocked one).
        self.loop_ran_at = time.monotonic()
        self.work_since: float | None = None  # when the current stretch of work began
        self.on_stall = on_stall or _exit_stalled
        self._stopped = threading.Event()
        self._judging: threading.Thread | None = None
        self._checked = False  # judged only once the event loop ran a first check
        self._recovered_through = 0  # the sum of the recovery's changelog offsets at the last check
        # A recovery quiet this long while its changelogs have records it has not read is given
        # them again (``nudge_recovery``), well before the stall timeout ends the worker.
        self.nudge_after_s = min(NUDGE_AFTER_S, stall_timeout_s / 4)
        self._recovery_quiet_since = time.monotonic()

    # -- on the event loop
    async def check(self) -> None:
        self._checked = True
        self.loop_ran_at = time.monotonic()
        assessment = Assessment(checked_at=time.monotonic(), recovering=_recovering(self.app))
        if assessment.recovering:
            # A recovery moves when its active changelog offsets do; fetching other partitions
            # is no progress (seen in a chaos run: a recovery waited for a changelog partition
            # that was not fetched after a broker restart).
            recovered_through = _recovered_through(self.app)
            if recovered_through != self._recovered_through:
                self._recovered_through = recovered_through
                self.progress.moved()
                self._recovery_quiet_since = assessment.checked_at
            elif not self.assessment.recovering:
                self._recovery_quiet_since = assessment.checked_at
            elif assessment.checked_at - self._recovery_quiet_since >= self.nudge_after_s:
                self._recovery_quiet_since = assessment.checked_at
                nudge_recovery(self.app, quiet_s=self.nudge_after_s)
        try:
            assessment.lag = await self._lag()
        except Exception as exc:  # noqa: BLE001  (brokers unreachable: no assessment on lag, keep checking)
            assessment.error = f"end offsets unknown: {exc}"
        if assessment.has_work and not self.assessment.has_work:
            self.work_since = assessment.checked_at
        elif not assessment.has_work:
            self.work_since = None
        self.assessment = assessment

    async def _lag(self) -> dict[str, int]:
        owned = _owned_event_partitions(self.app)
        if not owned:
            return {}
        by_topic: dict[str, list[int]] = {}
        for topic, partition in owned:
            by_topic.setdefault(topic, []).append(partition)
        ends = await asyncio.wait_for(asyncio.to_thread(self._end_offsets, by_topic), CHECK_EVERY_S * 2)
        committed = self.app.consumer._committed_offset  # TP -> what Faust committed (or found); TP is a tuple
        lag = {}
        for topic, partition in owned:
            end = ends.get(topic, {}).get(partition)
            done = max(self.progress.processed.get((topic, partition), 0), committed.get((topic, partition)) or 0)
            if end is not None:
                lag[f"{topic}/{partition}"] = max(end - done, 0)
        return lag

    # -- judged on a thread
    def stalled_for(self, now: float | None = None) -> tuple[float, str] | None:
        """How long, and why, the worker has not moved although it should; None if it is fine."""
        now = time.monotonic() if now is None else now
        if self.work_since is not None:
            since = max(self.progress.moved_at, self.work_since)
            if now - since > self.stall_timeout_s:
                work = "recovering state" if self.assessment.recovering else f"lagging {self.assessment.lagging}"
                return now - since, f"no progress while {work}"
        if now - self.loop_ran_at > self.stall_timeout_s:
            return now - self.loop_ran_at, "the event loop has not run a check"
        return None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start checking on ``loop`` and judging (once; later calls do nothing)."""
        if self._judging is None:
            self._judging = threading.Thread(target=self._judge, args=(loop,), name="labelstore-watchdog",
                                             daemon=True)
            self._judging.start()

    def stop(self) -> None:
        self._stopped.set()

    def _judge(self, loop: asyncio.AbstractEventLoop) -> None:
        last = time.monotonic()
        checking = None
        while not self._stopped.wait(1.0):
            if loop.is_closed():
                return
            if (checking is None or checking.done()) and time.monotonic() - self.assessment.checked_at >= CHECK_EVERY_S:
                checking = asyncio.run_coroutine_threadsafe(self.check(), loop)
            if not self._checked:
                continue  # the loop has not run yet: nothing to judge
            now = time.monotonic()
            if now - last > FROZEN_AFTER_S:
                # This thread was not run either: the whole process was stopped (SIGSTOP, a
                # suspended VM). Not a stall of its own; judge the time since it resumed.
                log.warning("the worker did not run for %.0f s; resuming the stall clock", now - last)
                self.progress.moved()
                self.assessment.checked_at = self.loop_ran_at = now
            last = now
            stalled = self.stalled_for()
            if stalled is not None:
                self.on_stall(f"stalled for {stalled[0]:.0f} s: {stalled[1]}")
                return

    # -- for the web pages
    def health(self) -> tuple[bool, dict[str, Any]]:
        stalled = self.stalled_for()
        return stalled is None, {
            "status": "ok" if stalled is None else "stalled",
            "reason": None if stalled is None else stalled[1],
            "seconds_since_progress": round(time.monotonic() - self.progress.moved_at, 1),
            "last_progress_at": self.progress.moved_at_wall,
            "recovering": self.assessment.recovering,
            "lagging": self.assessment.lagging,
            "lag_error": self.assessment.error,
            "stall_timeout_s": self.stall_timeout_s,
        }


def readiness(app: Any) -> tuple[bool, dict[str, Any]]:
    """Ready: not rebalancing, and the state of every assigned partition recovered."""
    recovery = app.tables.recovery
    ready = not app.rebalancing and recovery.completed.is_set() and not recovery.in_recovery
    return ready, {"ready": ready, "rebalancing": bool(app.rebalancing), "recovering": bool(recovery.in_recovery),
                   "assigned": sorted(f"{tp.topic}/{tp.partition}" for tp in _assignment(app)
                                      if tp.topic in app.intakes)}


def nudge_recovery(app: Any, *, quiet_s: float = 0.0) -> dict[str, int]:
    """Fetch again, from the record the recovery needs next, each active changelog partition whose
    highwater it has not reached; returns them with that offset.

    Faust's recovery waits for records that a fetch hands over; it never asks for them again.
    Records fetched and then dropped (by Faust's ``getmany`` while the flow is stopped or the
    partition paused, by a clear of its changelog queue) left it waiting until the stall timeout
    ended the worker. A seek to the next record it needs is safe at any moment: what it has seen
    again is skipped."""
    recovery, consumer = app.tables.recovery, app.consumer
    if not recovery.in_recovery or not hasattr(consumer, "reread"):
        return {}
    nudged = {}
    for tp in sorted(recovery.active_tps):
        highwater, offset = recovery.active_highwaters.get(tp), recovery.active_offsets.get(tp)
        if highwater is None or offset is None or offset >= highwater:
            continue
        consumer.reread(tp, max(offset + 1, 0))
        nudged[f"{tp.topic}/{tp.partition}"] = max(offset + 1, 0)
    if nudged:
        log.warning("the state recovery has not moved for %.0f s with changelog records left to read: "
                    "fetching them again from %s", quiet_s, nudged)
    return nudged


def _recovering(app: Any) -> bool:
    recovery = app.tables.recovery
    return bool(_assignment(app)) and (recovery.in_recovery or not recovery.completed.is_set())


def _recovered_through(app: Any) -> int:
    return sum(app.tables.recovery.active_offsets.values())


def _assignment(app: Any) -> set:
    try:
        return app.consumer.assignment()
    except Exception:  # noqa: BLE001  (no consumer yet)
        return set()


def _owned_event_partitions(app: Any) -> list[tuple[str, int]]:
    return sorted((tp.topic, tp.partition) for tp in _assignment(app) if tp.topic in app.intakes)


def _exit_stalled(reason: str, loop: asyncio.AbstractEventLoop | None = None) -> None:
    try:
        log.critical("exiting (%d) for a restart: %s", STALLED_EXIT_CODE, reason)
        # The real stderr: mode replaces sys.stderr with a logging proxy that has no file number,
        # and faulthandler's NotImplementedError once ended this thread before the exit below.
        faulthandler.dump_traceback(file=sys.__stderr__, all_threads=True)
        if loop is not None:
            _print_tasks(loop)
        sys.stderr.flush()
    finally:
        os._exit(STALLED_EXIT_CODE)


def _print_tasks(loop: asyncio.AbstractEventLoop) -> None:
    """Where each asyncio task waits (read from another thread: evidence, not exact)."""
    try:
        for task in list(asyncio.all_tasks(loop)):
            print(f"--- {task.get_name()} {task.get_coro()!r}", file=sys.stderr)
            task.print_stack(limit=12, file=sys.stderr)
    except Exception as exc:  # noqa: BLE001
        print(f"(tasks could not be listed: {exc!r})", file=sys.stderr)


def watch_progress(app: Any, settings: Settings) -> Watchdog:
    """The worker's watchdog, started: on a stall it logs the consumer's state and exits."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap_servers(settings)})

    def ends(partitions: dict[str, list[int]]) -> dict:
        return end_offsets(settings, partitions, timeout=CHECK_EVERY_S, admin=admin)

    loop = app.loop

    def on_stall(reason: str) -> None:
        log_consumer_state(app, "at the stall")
        _exit_stalled(reason, loop)

    watchdog = Watchdog(app, app.progress, ends, settings.processor.stall_timeout_s, on_stall=on_stall)
    watchdog.start(loop)
    return watchdog


def log_consumer_state(app: Any, when: str) -> None:
    try:
        log.warning("consumer state %s:\n%s", when, describe(consumer_state(app)))
    except Exception:  # noqa: BLE001  (evidence only: never let it stop what follows)
        log.exception("could not describe the consumer's state")
