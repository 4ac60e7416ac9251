"""The faults of a chaos run: drawn from a seed, applied one after the other.

The seed fixes the sequence of kinds, targets, durations and pauses between faults, so a run that
found something can be replayed with the same faults (the timing of the system under test still
varies). The short mode starts with every kind once, in a drawn order.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from random import Random

from confluent_kafka.admin import AdminClient

from chaos_fleet import Fleet, Materializer
from labelstore.localkafka import LocalKafkaCluster

KINDS = ("worker_kill", "worker_pause", "broker_kill", "rolling_restart", "materializer_kill", "worker_added")
BASE_WORKERS = 3
IN_SYNC_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Fault:
    kind: str
    target: int  # which worker or broker (0-based); unused by the others
    hold_s: float  # how long a process stays down, paused, or (the added worker) up
    gap_s: float  # quiet time before the fault


def schedule(seed: int, *, short: bool, session_timeout_s: float) -> Iterator[Fault]:
    rng = Random(seed)
    first = list(KINDS) if short else []
    rng.shuffle(first)
    holds = {
        "worker_kill": (0.5, 5.0),
        "worker_pause": (1.5 * session_timeout_s, 3.0 * session_timeout_s),  # past the session: partitions move
        "broker_kill": (2.0, 10.0) if short else (3.0, 30.0),
        "rolling_restart": (0.0, 0.0),
        "materializer_kill": (0.5, 5.0),
        "worker_added": (10.0, 20.0) if short else (20.0, 90.0),
    }
    gaps = (3.0, 8.0) if short else (10.0, 45.0)
    while True:
        kind = first.pop(0) if first else rng.choice(KINDS)
        yield Fault(kind, rng.randrange(BASE_WORKERS), round(rng.uniform(*holds[kind]), 1), round(rng.uniform(*gaps), 1))


class Injector:
    def __init__(self, cluster: LocalKafkaCluster, fleet: Fleet, materializer: Materializer, log_path: Path) -> None:
        self.cluster = cluster
        self.fleet = fleet
        self.materializer = materializer
        self.log_path = log_path
        self.applied: list[dict] = []
        self._admin = AdminClient({"bootstrap.servers": cluster.bootstrap_servers, "log_level": 0})

    def apply(self, fault: Fault, at_s: float) -> dict:
        started = time.monotonic()
        note = getattr(self, f"_{fault.kind}")(fault)
        record = {**asdict(fault), "at_s": round(at_s, 1), "took_s": round(time.monotonic() - started, 1), "note": note}
        self.applied.append(record)
        with self.log_path.open("a") as log:
            log.write(json.dumps(record) + "\n")
        return record

    def _worker_kill(self, fault: Fault) -> str:
        with self.fleet.lock:
            worker = self.fleet.workers[fault.target]
            worker.kill()
            time.sleep(fault.hold_s)
            worker.start()
        return worker.name

    def _worker_pause(self, fault: Fault) -> str:
        with self.fleet.lock:
            worker = self.fleet.workers[fault.target]
            if not worker.alive():
                worker.start()
                return f"{worker.name} was not running: restarted, not paused"
            worker.process.send_signal(signal.SIGSTOP)
            time.sleep(fault.hold_s)
            worker.process.send_signal(signal.SIGCONT)
        return worker.name

    def _broker_kill(self, fault: Fault) -> str:
        self.cluster.stop_node(fault.target, kill=True)
        time.sleep(fault.hold_s)
        self.cluster.start_node(fault.target)
        return f"node {fault.target + 1}; {self._wait_in_sync()}"

    def _rolling_restart(self, fault: Fault) -> str:
        notes = []
        for index in range(len(self.cluster.nodes)):
            self.cluster.stop_node(index)  # SIGTERM: a controlled shutdown hands leadership over
            self.cluster.start_node(index)
            notes.append(f"node {index + 1}: {self._wait_in_sync()}")  # as an operator waits before the next
        return "; ".join(notes)

    def _materializer_kill(self, fault: Fault) -> str:
        self.materializer.kill()
        time.sleep(fault.hold_s)
        self.materializer.start()
        return "materializer"

    def _worker_added(self, fault: Fault) -> str:
        with self.fleet.lock:
            worker = self.fleet.extra_worker()
        time.sleep(fault.hold_s)
        with self.fleet.lock:
            self.fleet.retire(worker)
        return worker.name

    def _wait_in_sync(self) -> str:
        """Until no partition of any topic is under-replicated."""
        started = time.monotonic()
        while time.monotonic() - started < IN_SYNC_TIMEOUT_S:
            try:
                topics = self._admin.list_topics(timeout=10).topics.values()
                if all(len(p.isrs) == len(p.replicas) for t in topics for p in t.partitions.values()):
                    return f"in sync after {time.monotonic() - started:.1f} s"
            except Exception:  # noqa: BLE001  (a broker still starting answers with assorted errors)
                pass
            time.sleep(1)
        return f"still under-replicated after {IN_SYNC_TIMEOUT_S:.0f} s"
