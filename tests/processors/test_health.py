"""The watchdog's judgement: work (lag from the brokers, or a recovery) without progress is a stall."""

from __future__ import annotations

import asyncio
import threading
import time
from types import SimpleNamespace

import pytest
from confluent_kafka import Producer
from faust.types import TP

from labelstore.events.admin import end_offsets
from labelstore.processors.health import FreezeGuard, Progress, Watchdog


class Recovery:
    def __init__(self, in_recovery=False, completed=True):
        self.in_recovery = in_recovery
        self.active_offsets = {}  # changelog TP -> offset recovered to
        self.completed = SimpleNamespace(is_set=lambda: completed)


def fake_app(topic, partitions, *, recovery=None):
    """A worker's Faust app as the watchdog sees it: its assignment, commits, intakes and recovery."""
    assignment = {TP(topic, p) for p in partitions} | {TP(f"{topic}-changelog", p) for p in partitions}
    consumer = SimpleNamespace(assignment=lambda: assignment, _committed_offset={})
    return SimpleNamespace(consumer=consumer, intakes={topic: None},
                           tables=SimpleNamespace(recovery=recovery or Recovery()))


@pytest.fixture
def events_topic(settings):
    """Four partitions holding 5, 0, 3 and 0 records."""
    topic = settings.topics.events_topic("order")
    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap_servers})
    for partition, count in ((0, 5), (2, 3)):
        for i in range(count):
            producer.produce(topic, key=b"k", value=b"v", partition=partition)
    assert producer.flush(30) == 0
    return topic


def watchdog_for(settings, app, progress, timeout=5.0):
    return Watchdog(app, progress, lambda partitions: end_offsets(settings, partitions), timeout,
                    on_stall=lambda reason: None)


def test_unprocessed_events_without_progress_are_a_stall(settings, events_topic):
    progress = Progress()
    watchdog = watchdog_for(settings, fake_app(events_topic, range(4)), progress)
    asyncio.run(watchdog.check())
    assert watchdog.assessment.error is None
    assert watchdog.assessment.lagging == {f"{events_topic}/0": 5, f"{events_topic}/2": 3}
    now = watchdog.work_since
    assert watchdog.stalled_for(now + 4.0) is None  # not yet
    stalled_for, reason = watchdog.stalled_for(now + 6.0)
    assert stalled_for == pytest.approx(6.0, abs=0.5) and "no progress while lagging" in reason
    assert watchdog.health()[0] is True  # the clock of health() is now, not 6 s on

    progress.acknowledged(events_topic, 0, 2)  # some progress: the stall clock starts again
    assert watchdog.stalled_for(progress.moved_at + 4.0) is None


def test_all_processed_or_committed_is_no_work(settings, events_topic):
    progress = Progress()
    app = fake_app(events_topic, range(4))
    progress.acknowledged(events_topic, 0, 4)
    app.consumer._committed_offset[TP(events_topic, 2)] = 3
    watchdog = watchdog_for(settings, app, progress)
    asyncio.run(watchdog.check())
    assert watchdog.assessment.lagging == {} and watchdog.work_since is None
    assert watchdog.stalled_for(progress.moved_at + 4) is None


def test_an_idle_worker_whose_checks_stop_is_stalled(settings, events_topic):
    progress = Progress()
    app = fake_app(events_topic, [1, 3])  # empty partitions: no work
    watchdog = watchdog_for(settings, app, progress)
    asyncio.run(watchdog.check())
    assert watchdog.work_since is None
    assert watchdog.stalled_for(watchdog.assessment.checked_at + 4) is None
    assert "event loop" in watchdog.stalled_for(watchdog.assessment.checked_at + 6)[1]


def test_a_recovery_that_does_not_move_is_a_stall(settings, events_topic):
    progress = Progress()
    watchdog = watchdog_for(settings, fake_app(events_topic, [1], recovery=Recovery(in_recovery=True, completed=False)),
                            progress)
    asyncio.run(watchdog.check())
    assert watchdog.assessment.recovering and watchdog.assessment.lagging == {}
    assert "recovering state" in watchdog.stalled_for(watchdog.work_since + 6)[1]


def test_a_recovery_moves_when_its_changelog_offsets_do_and_only_then(settings, events_topic):
    progress, recovery = Progress(), Recovery(in_recovery=True, completed=False)
    watchdog = watchdog_for(settings, fake_app(events_topic, [1], recovery=recovery), progress)
    asyncio.run(watchdog.check())
    recovery.active_offsets[TP(f"{events_topic}-changelog", 1)] = 40
    progress.moved_at -= 100
    asyncio.run(watchdog.check())
    assert time.monotonic() - progress.moved_at < 5  # 40 records recovered since the last check
    progress.moved_at -= 100
    asyncio.run(watchdog.check())
    assert time.monotonic() - progress.moved_at > 99  # none since


def test_brokers_that_cannot_answer_give_no_assessment_of_lag(events_topic):
    def unreachable(partitions):
        raise OSError("no brokers")

    watchdog = Watchdog(fake_app(events_topic, [0]), Progress(), unreachable, 5.0, on_stall=lambda reason: None)
    asyncio.run(watchdog.check())
    assert watchdog.assessment.error == "end offsets unknown: no brokers" and not watchdog.assessment.has_work


def test_the_judge_calls_the_stall_handler_from_its_thread(settings, events_topic):
    stalls: list[str] = []
    judged = threading.Event()

    def on_stall(reason):
        stalls.append(reason)
        judged.set()

    watchdog = Watchdog(fake_app(events_topic, [0]), Progress(), lambda p: end_offsets(settings, p), 0.5,
                        on_stall=on_stall)

    async def run_the_loop():  # the judge asks this loop for its checks
        watchdog.start(asyncio.get_running_loop())
        while not judged.is_set():
            await asyncio.sleep(0.1)

    asyncio.run(asyncio.wait_for(run_the_loop(), 20))
    assert stalls and "no progress while lagging" in stalls[0]


def test_a_blocked_event_loop_is_a_stall(settings, events_topic):
    stalls: list[str] = []
    watchdog = Watchdog(fake_app(events_topic, [1]), Progress(), lambda p: end_offsets(settings, p), 2.0,
                        on_stall=stalls.append)

    async def block_after_the_first_check():
        watchdog.start(asyncio.get_running_loop())
        while not watchdog._checked:
            await asyncio.sleep(0.1)
        time.sleep(8)  # the loop runs nothing now, as when a rule's query never ends

    asyncio.run(block_after_the_first_check())
    assert stalls and "the event loop has not run a check" in stalls[0]


def test_a_worker_that_did_not_run_past_most_of_its_session_holds_the_writes_of_that_generation():
    generation = [3]
    guard = FreezeGuard(session_timeout_s=10.0, current_generation=lambda: generation[0])
    assert guard.may_write(3)
    guard.last_tick -= 9.0  # stopped for 9 s: its partitions may be another worker's now
    assert not guard.may_write(3)
    generation[0] = 4  # the group moved on: what this worker takes now is of the new generation
    assert guard.may_write(4) and not guard.may_write(3)
    guard.last_tick = time.monotonic()  # ticking again
    guard.held_until = time.monotonic() - 0.1  # no rebalance came within a session timeout: it kept them
    assert guard.may_write(3)


def test_a_short_pause_holds_nothing():
    guard = FreezeGuard(session_timeout_s=10.0, current_generation=lambda: 1)
    guard.last_tick -= 7.0
    assert guard.may_write(1)


class Rereading:
    """The consumer's side of a nudge: which changelog partitions it was asked to fetch again, from where."""

    def __init__(self):
        self.rereads = []

    def reread(self, tp, offset):
        self.rereads.append((tp, offset))


def recovering_app(offsets, highwaters):
    recovery = Recovery(in_recovery=True, completed=False)
    recovery.active_tps, recovery.active_offsets, recovery.active_highwaters = set(offsets), offsets, highwaters
    consumer = Rereading()
    consumer.assignment, consumer._committed_offset = lambda: set(offsets), {}
    return SimpleNamespace(consumer=consumer, intakes={}, tables=SimpleNamespace(recovery=recovery))


def test_a_quiet_recovery_is_given_again_what_it_waits_for_and_only_that():
    never_read, short, done = (TP("order-state-changelog", p) for p in (4, 3, 0))
    app = recovering_app({never_read: -1, short: 1190, done: 1227}, {never_read: 1278, short: 1252, done: 1227})
    watchdog = Watchdog(app, Progress(), lambda partitions: {}, 120.0, on_stall=lambda reason: None)
    assert watchdog.nudge_after_s == 30.0
    asyncio.run(watchdog.check())
    watchdog._recovery_quiet_since -= 20
    asyncio.run(watchdog.check())
    assert app.consumer.rereads == []  # quiet for 20 s: not yet
    watchdog._recovery_quiet_since -= 15
    asyncio.run(watchdog.check())
    assert sorted(app.consumer.rereads) == [(short, 1191), (never_read, 0)]
    asyncio.run(watchdog.check())
    assert len(app.consumer.rereads) == 2  # the next nudge waits for another quiet stretch


def test_a_recovery_that_moves_is_not_nudged():
    tp = TP("order-state-changelog", 4)
    app = recovering_app({tp: 100}, {tp: 1278})
    watchdog = Watchdog(app, Progress(), lambda partitions: {}, 8.0, on_stall=lambda reason: None)
    asyncio.run(watchdog.check())
    for offset in (300, 600):
        watchdog._recovery_quiet_since -= 60
        app.tables.recovery.active_offsets[tp] = offset
        asyncio.run(watchdog.check())
    assert app.consumer.rereads == []
