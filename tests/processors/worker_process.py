"""A real processor worker in a child process, as an operator would run it."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from labelstore.events.reader import read_raw
from labelstore.labels import LabelVersion
from labelstore.localkafka.cluster import free_port
from labelstore.settings import ProcessorSettings, Settings
from labelstore.processors.launcher import start_worker_process


def with_processor(settings: Settings, data_dir: Path, **processor: object) -> Settings:
    conf = ProcessorSettings(data_dir=data_dir, web_port=free_port(), session_timeout_s=6.0, **processor)
    return settings.model_copy(update={"processor": conf})


class WorkerProcess:
    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.settings = settings
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.processor.web_port}"

    def start(self) -> WorkerProcess:
        self.process = start_worker_process(self.settings, self.log_path)
        return self

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self, timeout: float = 30.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def explain(self) -> None:
        """Evidence in the worker's log: its consumer's state, its asyncio tasks, its threads."""
        if self.process is None or self.process.poll() is not None:
            return
        for sig in (signal.SIGUSR2, signal.SIGUSR1, signal.SIGQUIT):
            self.process.send_signal(sig)
            time.sleep(1)

    def assert_alive(self) -> None:
        assert self.process.poll() is None, f"worker exited; log:\n{self.log_path.read_text()[-3000:]}"


def label_versions(settings: Settings) -> list[LabelVersion]:
    return [LabelVersion.from_json(value) for _, value, *_ in read_raw(settings, settings.topics.label_versions_topic)]


def wait_for(condition: Callable[[], object], *, timeout: float, worker: WorkerProcess | None = None,
             interval: float = 0.5) -> object:
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if worker is not None:
            worker.assert_alive()
        if time.monotonic() > deadline:
            if worker is not None:
                worker.explain()
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)
