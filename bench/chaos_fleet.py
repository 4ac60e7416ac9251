"""The processes a chaos run drives: processor workers, the materializer, a steady publisher.

The harness plays the supervisor: it starts, kills and restarts these processes. Each keeps its
log in the run's folder, appended across restarts, so a finding can be traced back.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from labelstore.events.exceptions import PublishError
from labelstore.events.publisher import Publisher
from labelstore.localkafka.cluster import free_port
from labelstore.processors.launcher import start_worker_process
from labelstore.settings import Settings


class Worker:
    """One processor worker; a restart keeps its web port, as a supervised service would."""

    def __init__(self, name: str, settings: Settings, log_dir: Path) -> None:
        processor = settings.processor.model_copy(update={"web_port": free_port()})
        self.name = name
        self.settings = settings.model_copy(update={"processor": processor})
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.processor.web_port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.alive() else None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        with self.log_path.open("a") as log:
            log.write(f"--- chaos: start #{self.starts + 1} at {time.strftime('%H:%M:%S')}\n")
        self.process = start_worker_process(self.settings, self.log_path)
        self.starts += 1

    def kill(self) -> None:
        if self.alive():
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(30)

    def stop(self, timeout: float = 45.0) -> None:
        if not self.alive():
            return
        self.process.send_signal(signal.SIGCONT)  # a paused worker could not act on SIGTERM
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()


class Fleet:
    """The workers; the fault loop and the stall watch both act on them, one at a time."""

    def __init__(self, settings: Settings, log_dir: Path, count: int) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self.lock = threading.RLock()
        self.workers = [Worker(f"worker-{i + 1}", settings, log_dir) for i in range(count)]
        self._names = itertools.count(count + 1)

    def start(self) -> None:
        for worker in self.workers:
            worker.start()

    def extra_worker(self) -> Worker:
        worker = Worker(f"worker-{next(self._names)}", self.settings, self.log_dir)
        self.workers.append(worker)
        worker.start()
        return worker

    def retire(self, worker: Worker) -> None:
        worker.stop()
        self.workers.remove(worker)

    def by_url(self, url: str) -> Worker | None:
        port = url.rstrip("/").rsplit(":", 1)[-1]
        return next((w for w in self.workers if str(w.settings.processor.web_port) == port), None)

    def revive_exited(self) -> list[str]:
        """Restart workers that exited by themselves (a supervisor's job); their names."""
        revived = []
        with self.lock:
            for worker in self.workers:
                if worker.process is not None and not worker.alive():
                    worker.start()
                    revived.append(worker.name)
        return revived

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()


class Materializer:
    """``labelstore materialize`` in a child process."""

    def __init__(self, settings: Settings, log_dir: Path) -> None:
        self.settings = settings
        self.log_path = log_dir / "materializer.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        env = {**os.environ, **self.settings.to_environment()}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "labelstore", "materialize", "--log-level", "info"],
                                            env=env, stdout=log, stderr=log)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        if self.alive():
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(30)

    def stop(self, timeout: float = 45.0) -> None:
        if not self.alive():
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()


@dataclass
class PublisherStats:
    published: int = 0
    failed: int = 0
    failures: list[str] = field(default_factory=list)


class SteadyPublisher(threading.Thread):
    """Publishes ``rate`` events a second in ticks of 100 ms, catching up after a slow tick (a
    broker that is down holds acknowledgements back), so the average rate stays steady."""

    TICK_S = 0.1

    def __init__(self, settings: Settings, events: Iterator, rate: int) -> None:
        super().__init__(name="chaos-publisher", daemon=True)
        self.settings = settings
        self.events = events
        self.rate = rate
        self.stats = PublisherStats()
        self._stopping = threading.Event()

    def run(self) -> None:
        started = time.monotonic()
        with Publisher(self.settings, source="chaos") as publisher:
            while not self._stopping.is_set():
                due = int((time.monotonic() - started) * self.rate) - self.stats.published - self.stats.failed
                chunk = list(itertools.islice(self.events, max(0, min(due, self.rate))))
                if chunk:
                    self._publish(publisher, chunk)
                self._stopping.wait(self.TICK_S)

    def _publish(self, publisher: Publisher, chunk: list) -> None:
        try:
            publisher.publish_many(chunk)
            self.stats.published += len(chunk)
        except PublishError as exc:
            # Not silently dropped: counted and reported. The checks work on what the log holds.
            delivered = len(exc.delivered)
            self.stats.published += delivered
            self.stats.failed += len(chunk) - delivered
            if len(self.stats.failures) < 20:
                self.stats.failures.append(str(exc)[:300])

    def stop(self) -> None:
        self._stopping.set()
        self.join(180)


def py_spy() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


def dump_process(pid: int, name: str, dump_dir: Path, label: str) -> list[str]:
    """What a stuck process was doing: py-spy's stacks (native frames too) into the dump folder,
    then SIGUSR1 (asyncio tasks) and SIGQUIT (every thread, faulthandler) into the worker's log."""
    dump_dir.mkdir(parents=True, exist_ok=True)
    notes = []
    tool = py_spy()
    if tool is None:
        notes.append("py-spy not installed: pip install -e '.[bench]'")
    else:
        target = dump_dir / f"{label}-{name}-py-spy.txt"
        done = subprocess.run([tool, "dump", "--pid", str(pid), "--locals"], capture_output=True, text=True, timeout=60)
        target.write_text(done.stdout + done.stderr)
        notes.append(str(target))
    for signum in (signal.SIGUSR1, signal.SIGQUIT):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            notes.append(f"{name} exited before {signum.name}")
    time.sleep(2)  # let the worker write both dumps before anyone kills it
    return notes


def reap(run_dir: Path) -> list[int]:
    """Kill what is left of a run that broke off: the brokers (their command lines name the run's
    folder) and the workers and materializers (their LABELSTORE_ settings do). Returns the pids."""
    marker = str(run_dir).encode()
    killed = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            command = (entry / "cmdline").read_bytes()
            environment = (entry / "environ").read_bytes()
        except OSError:
            continue
        broker = command.split(b"\0")[0].endswith(b"java") and marker in command
        child = any(line.startswith(b"LABELSTORE_") and marker in line for line in environment.split(b"\0"))
        if broker or child:
            try:
                os.kill(int(entry.name), signal.SIGKILL)
                killed.append(int(entry.name))
            except ProcessLookupError:
                pass
    return killed
