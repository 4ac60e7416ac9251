"""The processor group's lag, sampled all through a chaos run, and the stalls it reveals.

Lag per event partition is the end offset minus the group's committed offset (the group id is
the Faust app id with the topic prefix), asked of the brokers directly. A partition stalls when
its committed offset has not reached, within ``stall_after_s``, the end offset it had then: the
watch then asks the workers who owns it (Faust's ``/router/`` page), dumps the owners (py-spy, asyncio tasks, every
thread's stack) and, like a progress watchdog, kills and restarts them so the run can go on.
"""

from __future__ import annotations

import json
import threading
from collections import deque
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.request import urlopen

from confluent_kafka import Consumer, KafkaException, TopicPartition

from chaos_fleet import Fleet, Worker, dump_process
from labelstore.settings import Settings

Partition = tuple[str, int]


@dataclass
class Stall:
    at_s: float
    partitions: dict[str, int]  # "topic[partition]" -> lag
    owners: list[str]
    dumps: list[str] = field(default_factory=list)
    restarted: list[str] = field(default_factory=list)


class GroupLag:
    """Committed offsets and end offsets of the processor's group on the event topics.

    A consumer that never subscribes asks the group's coordinator for its committed offsets
    without joining the group. (AdminClient.list_consumer_group_offsets was tried first: while
    the group coordinator was still loading, librdkafka 2.16 aborted the whole process on an
    assertion in rd_kafka_enq_once_del_source_return.)
    """

    def __init__(self, settings: Settings) -> None:
        self.consumer = Consumer({"bootstrap.servers": settings.kafka.bootstrap_servers, "log_level": 0,
                                  "group.id": settings.topics.prefix + settings.processor.app_id,
                                  "enable.auto.commit": False})
        self.partitions = [TopicPartition(settings.topics.events_topic(e), p)
                           for e in settings.repository.entity_types for p in range(settings.kafka.partitions)]

    def sample(self, timeout: float = 10.0) -> dict[Partition, tuple[int, int]]:
        """(committed, end) of every event partition; a partition never committed counts as 0."""
        answer = self.consumer.committed(self.partitions, timeout=timeout)
        failed = next((tp.error for tp in answer if tp.error is not None), None)
        if failed is not None:
            raise KafkaException(failed)
        committed = {(tp.topic, tp.partition): max(tp.offset, 0) for tp in answer}
        return {(tp.topic, tp.partition): (committed[(tp.topic, tp.partition)],
                                           self.consumer.get_watermark_offsets(tp, timeout=timeout)[1])
                for tp in self.partitions}

    def close(self) -> None:
        self.consumer.close()


def owners(fleet: Fleet, settings: Settings) -> dict[Partition, Worker]:
    """Which worker holds which event partition as active, as the group's last assignment says;
    the state changelogs are co-partitioned with the event topics."""
    prefix = f"{settings.topics.prefix}{settings.processor.app_id}-"
    topics = {f"{prefix}{e}-state-changelog": settings.topics.events_topic(e) for e in settings.repository.entity_types}
    for worker in [w for w in fleet.workers if w.alive()]:
        try:
            with urlopen(f"{worker.url}/router/", timeout=5) as response:
                distribution = json.load(response)
        except (OSError, ValueError):
            continue
        found = {}
        for url, assignment in distribution.items():
            holder = fleet.by_url(url)
            for changelog, partitions in assignment.items():
                if holder is not None and changelog in topics:
                    found.update({(topics[changelog], p): holder for p in partitions})
        if found:
            return found
    return {}


class LagWatch(threading.Thread):
    def __init__(self, settings: Settings, fleet: Fleet, run_dir: Path, *, stall_after_s: float,
                 restart_stalled: bool = False, interval_s: float = 2.0) -> None:
        super().__init__(name="chaos-lag-watch", daemon=True)
        self.settings = settings
        self.fleet = fleet
        self.run_dir = run_dir
        self.stall_after_s = stall_after_s
        self.restart_stalled = restart_stalled
        self.interval_s = interval_s
        self.group = GroupLag(settings)
        self.started = time.monotonic()
        self.latest: dict[Partition, tuple[int, int]] = {}
        self.sampled_at = 0.0
        self.max_lag = 0
        self.sample_errors = 0
        self.stalls: list[Stall] = []
        self._ends: dict[Partition, deque[tuple[float, int]]] = {}  # (when, end offset) samples
        self.armed = False  # set once the workers are up: a start-up backlog is not a stall
        self._stopping = threading.Event()
        self._log = (run_dir / "lag.log").open("a")

    @property
    def total_lag(self) -> int | None:
        return sum(end - committed for committed, end in self.latest.values()) if self.latest else None

    def run(self) -> None:
        while not self._stopping.wait(self.interval_s):
            try:
                self.latest, self.sampled_at = self.group.sample(), time.monotonic()
            except (KafkaException, TimeoutError) as exc:
                # A broker fault in progress, or a client whose metadata went stale across a rolling
                # restart ("Unknown partition" for minutes, seen): start afresh.
                self.sample_errors += 1
                self._log.write(f"{self.elapsed():8.1f} sample failed: {exc}\n")
                self.group.close()
                self.group = GroupLag(self.settings)
                continue
            self._log.write(f"{self.elapsed():8.1f} lag {self.total_lag}\n")
            self._log.flush()
            self.max_lag = max(self.max_lag, self.total_lag)
            stalled = self._stalled(time.monotonic())
            if stalled:
                try:
                    self._handle(stalled)
                except Exception as exc:  # noqa: BLE001  (the watch must outlive what it watches)
                    self._log.write(f"{self.elapsed():8.1f} handling a stall failed: {exc!r}\n")

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def _stalled(self, now: float) -> dict[Partition, int]:
        """Partitions whose committed offset has not reached the end offset they had
        ``stall_after_s`` ago: stuck, or crawling behind a steady input (seen: a partition's
        committed offset moved a few events a minute while its lag stayed ~800)."""
        stalled = {}
        for partition, (committed, end) in self.latest.items():
            history = self._ends.setdefault(partition, deque())
            history.append((now, end))
            while len(history) > 1 and history[1][0] <= now - self.stall_after_s:
                history.popleft()
            since, end_then = history[0]
            if self.armed and now - since >= self.stall_after_s and committed < end_then:
                stalled[partition] = end - committed
        return stalled

    def _handle(self, stalled: dict[Partition, int]) -> None:
        label = f"stall-{len(self.stalls) + 1}"
        with self.fleet.lock:
            holders = owners(self.fleet, self.settings)
            targets = {holders[p].name: holders[p] for p in stalled if p in holders}
            if not targets:  # nobody claims the partitions: every worker may be part of the story
                targets = {w.name: w for w in self.fleet.workers if w.alive()}
            stall = Stall(round(self.elapsed(), 1), {f"{t}[{p}]": lag for (t, p), lag in stalled.items()},
                          sorted({holders[p].name for p in stalled if p in holders}))
            for worker in targets.values():
                if worker.pid is not None:
                    stall.dumps += dump_process(worker.pid, worker.name, self.run_dir / "dumps", label)
            if self.restart_stalled:
                for worker in targets.values():
                    worker.kill()
                    worker.start()
                    stall.restarted.append(worker.name)
        self.stalls.append(stall)
        self._log.write(f"{self.elapsed():8.1f} {label}: {stall}\n")
        for partition in stalled:
            self._ends.pop(partition, None)  # a fresh window for the restarted owner

    def wait_for_progress(self, timeout: float) -> bool:
        """Until every partition has a committed offset: the workers are up and processing."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.latest and all(committed > 0 for committed, _ in self.latest.values()):
                return True
            time.sleep(self.interval_s)
        return False

    def wait_for_zero(self, timeout: float) -> bool:
        """Until a sample taken from now on finds every committed offset at its end offset."""
        since = time.monotonic()
        deadline = since + timeout
        while time.monotonic() < deadline:
            if self.sampled_at > since and self.total_lag == 0:
                return True
            time.sleep(self.interval_s)
        return False

    def stop(self) -> None:
        self._stopping.set()
        self.join(30)
        self.group.close()
        self._log.close()
