"""The SIGKILL scenario of tests/processors/test_worker_faults.py, N times, under exactly-once.

    python bench/exactly_once.py --runs 10

Each run: a fresh topic prefix on one local broker, 100k fraud-example events, a worker killed
with SIGKILL once a third of the label versions are out, a second worker to the end. A
read_committed reader then counts the label versions: expected (an uninterrupted fold of the same
log), read back, duplicates (by version_id) and lost. Then events/s of one uninterrupted worker
under exactly-once and under at-least-once over the same log (the cost of the transactions),
timed from its first label version to its last, so start-up and group joins are not counted.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from labelstore.events.admin import ensure_topics  # noqa: E402
from labelstore.events.reader import count_records  # noqa: E402
from labelstore.localkafka import LocalKafkaCluster  # noqa: E402
from labelstore.settings import LocalKafkaSettings  # noqa: E402
from tests.conftest import settings_for  # noqa: E402
from tests.fraud_example import generate  # noqa: E402
from tests.processors.test_worker_faults import publish, uninterrupted_versions  # noqa: E402
from tests.processors.worker_process import WorkerProcess, label_versions, wait_for, with_processor  # noqa: E402

EVENTS = 100_000


def prepared(cluster, root: Path, guarantee: str):
    settings = with_processor(settings_for(cluster.bootstrap_servers), root / "data", processing_guarantee=guarantee)
    ensure_topics(settings)
    publish(settings, itertools.islice(generate(45_000, 5_000, seed=21), EVENTS))
    return settings, uninterrupted_versions(settings)


def killed_run(cluster, root: Path) -> tuple[int, int, int, int]:
    settings, expected = prepared(cluster, root, "exactly_once")
    topic = settings.topics.label_versions_topic
    first = WorkerProcess(settings, root / "first.log").start()
    try:
        wait_for(lambda: count_records(settings, topic) >= len(expected) // 3, timeout=240, worker=first, interval=0.2)
    finally:
        first.kill()
    second = WorkerProcess(settings, root / "second.log").start()
    try:
        deadline = time.monotonic() + 300
        while True:
            emitted = label_versions(settings)
            ids = {v.version_id for v in emitted}
            if ids >= set(expected) or time.monotonic() > deadline:
                break
            time.sleep(5)
        time.sleep(5)  # anything still to come (duplicates) comes now
        emitted = label_versions(settings)
    finally:
        second.stop()
    ids = {v.version_id for v in emitted}
    return len(expected), len(emitted), len(emitted) - len(ids), len(set(expected) - ids)


def events_per_second(cluster, root: Path, guarantee: str) -> float:
    settings, expected = prepared(cluster, root, guarantee)
    worker = WorkerProcess(settings, root / f"{guarantee}.log").start()
    topic = settings.topics.label_versions_topic
    try:
        wait_for(lambda: count_records(settings, topic) > 0, timeout=240, worker=worker, interval=0.05)
        started = time.monotonic()
        wait_for(lambda: len({v.version_id for v in label_versions(settings)}) >= len(expected), timeout=600,
                 worker=worker, interval=0.5)
        return EVENTS / (time.monotonic() - started)
    finally:
        worker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory() as tmp, \
            LocalKafkaCluster(LocalKafkaSettings(), nodes=1, data_dir=Path(tmp) / "kafka") as cluster:
        table = Table(title=f"exactly_once, SIGKILL mid-stream, {args.runs} runs ({EVENTS:,} events each)")
        for column in ("run", "versions expected", "read back", "duplicates", "lost"):
            table.add_column(column, justify="right")
        for run in range(1, args.runs + 1):
            figures = killed_run(cluster, Path(tmp) / f"run{run}")
            table.add_row(str(run), *(f"{figure:,}" for figure in figures))
            console.print(f"run {run}: {figures}")
        console.print(table)
        speeds = {guarantee: events_per_second(cluster, Path(tmp) / guarantee, guarantee)
                  for guarantee in ("at_least_once", "exactly_once")}
        costs = Table(title="one worker, uninterrupted, first to last label version")
        costs.add_column("guarantee")
        costs.add_column("events/s", justify="right")
        for guarantee, speed in speeds.items():
            costs.add_row(guarantee, f"{speed:,.0f}")
        costs.add_row("exactly/at-least", f"{speeds['exactly_once'] / speeds['at_least_once']:.2f}x")
        console.print(costs)


if __name__ == "__main__":
    main()
