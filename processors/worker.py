"""Run one processor worker in this process until it is stopped (SIGTERM/SIGINT)."""

from __future__ import annotations

import logging
import os

import faust

from labelstore.settings import Settings
from processors.app import create_app

QUIET_LOGGERS = ("faust", "mode", "aiokafka", "kafka", "asyncio", "aiohttp", "rocksdict")


def run_worker(settings: Settings, log_level: str = "info") -> None:
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Faust leaves its loggers at DEBUG; each debug call on the hot path still builds a record.
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    app = create_app(settings)
    faust.Worker(app, loglevel="WARNING", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    run_worker(Settings(), os.environ.get("LABELSTORE_WORKER_LOG_LEVEL", "info"))
