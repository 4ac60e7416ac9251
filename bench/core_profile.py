"""The processor's shared core alone, no broker: microseconds per event, and where they go.

    python bench/core_profile.py --orders 20000 --events-per-order 10 [--profile]

The order lifecycles of ``processor_throughput.py`` (pre-encoded, not timed) go through
``EntityProcessor.process`` in batches of ``--batch`` with an in-memory store, then through the
at-least-once outputs' encoding (``batch_outputs``, ``encode_record``): everything the worker does
per event except Kafka I/O and Faust. The store holds entity records encoded, as the worker's table does. Prints us/event for each step, best of ``--repeat``; with
``--profile``, the top functions by own time (cProfile) of one more pass.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from collections.abc import Callable

import example  # noqa: F401  (the fraud example repository)
from labelstore.collector import collect_less
from labelstore.declarations import load_declarations
from labelstore.processors.core import EntityProcessor, RawMessage, decode_record, encode_record
from labelstore.processors.outputs import batch_outputs
from labelstore.rules.model import load_rules
from labelstore.settings import Settings
from processor_throughput import order_records


def batches_of(records: list[tuple[bytes, bytes]], size: int, partitions: int = 6) -> list[list[RawMessage]]:
    messages = [RawMessage("order.events", hash(key) % partitions, offset, 1_767_225_600_000 + offset, key, value)
                for offset, (key, value) in enumerate(records)]
    return [messages[start:start + size] for start in range(0, len(messages), size)]


def run(batches: list[list[RawMessage]], settings: Settings, outputs: bool) -> tuple[float, int]:
    """Seconds for every batch through a fresh processor; versions emitted."""
    processor = EntityProcessor(load_declarations()["order"], [r for r in load_rules() if r.entity_type == "order"])
    store: dict[bytes, bytes] = {}  # as the worker's table holds them: encoded

    def stored(key: bytes) -> dict | None:
        return decode_record(store.get(key))

    versions = 0
    started = time.perf_counter()
    for batch in batches:
        result = processor.process(batch, stored)
        if outputs:
            batch_outputs(result, settings)
        for key, record in result.records.items():
            store[key] = encode_record(record)
        versions += len(result.versions)
    return time.perf_counter() - started, versions


def best(repeat: int, once: Callable[[], tuple[float, int]]) -> tuple[float, int]:
    results = [once() for _ in range(repeat)]
    return min(seconds for seconds, _ in results), results[0][1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=20_000)
    parser.add_argument("--events-per-order", type=int, default=10)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    collect_less()  # as the worker does
    records = list(order_records(args.orders, args.events_per_order))
    batches = batches_of(records, args.batch)
    settings = Settings()
    events = len(records)
    core, versions = best(args.repeat, lambda: run(batches, settings, outputs=False))
    whole, _ = best(args.repeat, lambda: run(batches, settings, outputs=True))
    print(f"{events:,} events, {versions:,} versions, batches of {args.batch}")
    print(f"  core (decode, check, fold, rules, versions, stored records): {core / events * 1e6:6.1f} us/event "
          f"({events / core:,.0f} events/s)")
    print(f"  core + output encoding:                                      {whole / events * 1e6:6.1f} us/event "
          f"({events / whole:,.0f} events/s)")
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        run(batches, settings, outputs=True)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
