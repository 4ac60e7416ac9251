"""Start processor workers as child processes (the demo, tests and benchmarks use real workers)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from labelstore.settings import Settings


def start_worker_process(settings: Settings, log_path: Path, *, log_level: str = "info") -> subprocess.Popen:
    """A worker in its own process, configured by ``settings``, logging to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **settings.to_environment(), "LABELSTORE_WORKER_LOG_LEVEL": log_level}
    with log_path.open("ab") as log:
        return subprocess.Popen([sys.executable, "-m", "labelstore.processors.worker"], env=env, stdout=log, stderr=log)
