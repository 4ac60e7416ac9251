"""A stop that always ends: after SIGTERM a process has a bounded time to stop cleanly.

A worker or materializer asked to stop commits what it can; with its brokers gone that can wait
forever (Faust's ``Worker.stop_and_shutdown`` did, for ten minutes and more). An orphan that never
exits is worse than a stop that gives up: label versions are durable before state is stored and
the archive commits its offsets with its files, so giving up loses nothing a restart will not redo.
"""

from __future__ import annotations

import logging
import os
import threading

log = logging.getLogger("labelstore.shutdown")
EXIT_STOP_TIMED_OUT = 75  # EX_TEMPFAIL: the stop did not finish; a restart resumes where it ended


def arm_stop_deadline(seconds: float, what: str) -> threading.Timer:
    """Exit the process if it is still alive ``seconds`` from now (once per process is enough)."""

    def give_up() -> None:
        log.critical("%s did not stop within %.0f s of the request (brokers unreachable?): exiting", what, seconds)
        logging.shutdown()
        os._exit(EXIT_STOP_TIMED_OUT)

    timer = threading.Timer(seconds, give_up)
    timer.daemon = True
    timer.start()
    return timer
