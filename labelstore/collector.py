"""Python's cycle collector, tuned for processes that make and drop many small objects per record.

The processor and the materializer make a few dicts and tuples per record, nearly all freed by
reference counting as soon as a batch is done. With the default thresholds (a collection of the
youngest generation every 700 allocations, of all of them every 100 of those) the collector
walked the process's objects so often that it took a quarter of the processor's core time
(36.3 us an event against 27.6 us with a first threshold of 10,000; bench/core_profile.py).
Garbage in cycles is still collected, a little later.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

YOUNGEST_GENERATION_THRESHOLD = 10_000


def collect_less() -> None:
    """Collect the youngest generation every 10,000 allocations instead of every 700."""
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNGEST_GENERATION_THRESHOLD, middle, oldest)


@contextmanager
def paused() -> Iterator[None]:
    """No cycle collection while a loop builds millions of objects that all stay alive (a state
    history): each full collection would walk all of them again."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
