"""Processor workers scaled out on a three-node cluster: throughput with 1, 2, 3 workers, and the
time a fresh worker takes to recover its partitions' state from the changelog.

    python bench/scale_out.py --orders 50000 --events-per-order 10 --recovery-entities 1000000
    python bench/scale_out.py --skip-recovery --workers 1,2,3          # throughput only
    python bench/scale_out.py --skip-throughput --recovery-entities 200000 --stores memory

A local three-node cluster (replication factor 3, min.insync.replicas 2), the fraud example.

Throughput: for each worker count, the same pre-encoded order events go to topics of their own
(same keys, same order, so the same partitions and offsets), then that many workers start in one
consumer group. Events/s is measured as bench/processor_throughput.py measures it, from the
output's timestamps, but from the moment the group has settled (one member per worker, every
partition owned, every worker's /readyz 200), so the joins and rebalances of the start are not
counted. Every run must emit the same label versions (id, value, previous value, causing
partition and offset, partition written) as an uninterrupted re-fold of its log; duplicates
(at-least-once) are counted apart. Worker CPU is the user + system time of all the workers.

Recovery: one worker folds one OrderCreated event for each of --recovery-entities orders (one
state record each on the changelog) and is stopped (SIGTERM). Then a fresh worker of the same
group, with an empty data directory, takes every partition and must restore their state from the
changelog before it is ready: the time from its start to /readyz 200 is what an operator waits
when a worker replaces another on a new machine. The same is timed for a worker of an empty group
(nothing to restore: Python, Faust and the group join), and the changelog records/s are the
records over the difference. With the rocksdb extra installed, a RocksDB worker is timed too, and
again restarted on its own data directory (it then reads only what its disk does not hold).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from urllib.error import URLError
from urllib.request import urlopen

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from rich.console import Console
from rich.table import Table

import example  # noqa: F401  (the fraud example repository)
from labelstore.events.admin import ensure_topics, topic_specs
from labelstore.events.reader import count_records, read_raw
from labelstore.localkafka import LocalKafkaCluster
from labelstore.localkafka.cluster import free_port
from labelstore.processors.launcher import start_worker_process
from labelstore.processors.refold import uninterrupted_versions
from labelstore.settings import KafkaSettings, LocalKafkaSettings, ProcessorSettings, Settings, TopicSettings
from processor_throughput import order_records, publish_raw, same_as

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cluster_settings(bootstrap: str, data_dir: Path, **processor: object) -> Settings:
    """A run's own topics, replicated three times with two in sync required, as in production."""
    settings = Settings(
        kafka=KafkaSettings(bootstrap_servers=bootstrap, replication_factor=3, min_insync_replicas=2),
        topics=TopicSettings(prefix=f"scale{uuid.uuid4().hex[:8]}."),
        processor=ProcessorSettings(data_dir=data_dir, web_port=free_port(), session_timeout_s=6.0, **processor),
    )
    ensure_topics(settings, topic_specs(settings))
    return settings


def on_own_port(settings: Settings, **processor: object) -> Settings:
    conf = settings.processor.model_copy(update={"web_port": free_port(), **processor})
    return settings.model_copy(update={"processor": conf})


class Workers:
    """Worker processes of one group; their CPU time is read before they stop."""

    def __init__(self, settings: list[Settings], log_dir: Path, log_level: str = "warning") -> None:
        self.settings = settings
        self.processes = [start_worker_process(s, log_dir / f"worker-{s.processor.web_port}.log", log_level=log_level)
                          for s in settings]
        self.cpu_s = 0.0

    def assert_running(self) -> None:
        for process in self.processes:
            if process.poll() is not None:
                raise RuntimeError(f"worker {process.pid} exited with {process.returncode}; see its log")

    def stop(self) -> None:
        self.cpu_s = sum(cpu_seconds(p.pid) for p in self.processes if p.poll() is None)
        for process in self.processes:
            process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(45)
            except subprocess.TimeoutExpired:
                process.kill()


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (/proc/<pid>/stat fields 14 and 15)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def ready_partitions(settings: Settings) -> frozenset[str] | None:
    """The worker's event partitions once /readyz answers 200 (state recovered), else None."""
    try:
        with urlopen(f"http://127.0.0.1:{settings.processor.web_port}/readyz", timeout=5) as response:
            return frozenset(json.load(response)["assigned"])
    except (URLError, OSError):  # 503 (HTTPError), or not serving yet
        return None


def group_members(settings: Settings) -> list[frozenset[str]] | None:
    """Each member's event partitions as the coordinator has them (None while it cannot say)."""
    group = settings.topics.prefix + settings.processor.app_id
    events = {settings.topics.events_topic(e) for e in settings.repository.entity_types}
    admin = AdminClient({"bootstrap.servers": settings.kafka.bootstrap_servers})  # held: a collected client never answers
    try:
        description = admin.describe_consumer_groups([group], request_timeout=10)[group].result(15)
    except (KafkaException, TimeoutError):
        return None  # no coordinator yet, or it is loading (the group's first join)
    return [frozenset(f"{tp.topic}/{tp.partition}" for tp in m.assignment.topic_partitions if tp.topic in events)
            for m in description.members]


def settled(settings: list[Settings]) -> bool:
    """One member per worker, every event partition owned once, each worker ready with what it owns."""
    members = group_members(settings[0])
    if members is None or len(members) != len(settings):
        return False
    owned = Counter(tp for member in members for tp in member)
    every = len(settings[0].repository.entity_types) * settings[0].kafka.partitions
    ready = [ready_partitions(s) for s in settings]
    return len(owned) == every and max(owned.values()) == 1 and sorted(map(sorted, members)) == \
        sorted(sorted(r) for r in ready if r is not None) and None not in ready


def rate_since(settings: Settings, since_ms: float) -> tuple[float, int]:
    """Events/s shown by the output from ``since_ms`` to the last version (processor_throughput's
    rule: a partition's events are covered up to the highest causing offset written), and the
    events covered in that time."""
    written = sorted(((timestamp, json.loads(value)["caused_by"]) for _, value, _, _, timestamp, _ in
                      read_raw(settings, settings.topics.label_versions_topic)), key=lambda item: item[0])
    start = max(since_ms, written[0][0])
    end = written[-1][0]
    if end <= start:
        return float("nan"), 0  # done before the group settled: too few events to measure
    at_start: dict[int, int] = {}
    at_end: dict[int, int] = {}
    for timestamp, cause in written:
        if timestamp <= start:
            at_start[cause["partition"]] = max(at_start.get(cause["partition"], -1), cause["offset"])
        at_end[cause["partition"]] = max(at_end.get(cause["partition"], -1), cause["offset"])
    events = sum(at_end.values()) - sum(at_start.values()) + len(at_end) - len(at_start)
    return events / max((end - start) / 1000, 1e-3), events


def version_contents(settings: Settings) -> Counter:
    """What the versions say, leaving out what differs between runs (topic names, log-append times)."""
    contents: Counter = Counter()
    for _, value, partition, *_ in read_raw(settings, settings.topics.label_versions_topic):
        version = json.loads(value)
        cause = version["caused_by"]
        contents[(version["version_id"], version["value"], version["previous_value"], version["event_time"],
                  cause["partition"], cause["offset"], partition)] += 1
    return contents


@dataclass
class ThroughputRow:
    workers: int
    events_per_s: float
    wall_s: float
    settle_s: float
    versions: int
    duplicates: int
    same: str
    cpu_s: float


def throughput_run(cluster: LocalKafkaCluster, records: list, count: int, scratch: Path,
                   timeout: float) -> ThroughputRow:
    """``count`` workers over the records, from their start to the last version."""
    base = cluster_settings(cluster.bootstrap_servers, scratch / f"workers-{count}")
    publish_raw(base, iter(records))
    expected = {(str(v.version_id), v.value, v.previous_value, v.event_time, v.caused_by.partition,
                 v.caused_by.offset, v.caused_by.partition) for v in uninterrupted_versions(base).values()}
    settings = [base] + [on_own_port(base) for _ in range(count - 1)]
    started = time.monotonic()
    workers = Workers(settings, scratch)
    settled_ms = None
    try:
        while True:
            workers.assert_running()
            if settled_ms is None and settled(settings):
                settled_ms = time.time() * 1000
                settle_s = time.monotonic() - started
            if settled_ms is not None and count_records(base, base.topics.label_versions_topic) >= len(expected):
                break
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"{count} workers did not finish within {timeout} s; logs in {scratch}")
            time.sleep(0.5)
        wall = time.monotonic() - started
    finally:
        workers.stop()
    contents = version_contents(base)
    rate, _ = rate_since(base, settled_ms)
    unique = Counter(set(contents))
    return ThroughputRow(count, rate, wall, settle_s, len(unique), sum(contents.values()) - len(unique),
                         same_as(Counter(expected), unique), workers.cpu_s)


@dataclass
class RecoveryRow:
    store: str
    entities: int
    changelog_records: int
    to_ready_s: float
    baseline_s: float
    from_changelog: bool = True  # False: restored from its own disk, reading only the changelog's tail

    @property
    def records_per_s(self) -> float:
        return self.changelog_records / max(self.to_ready_s - self.baseline_s, 1e-3)


def changelog_records(settings: Settings) -> int:
    topic = f"{settings.topics.prefix}{settings.processor.app_id}-order-state-changelog"
    return count_records(settings, topic)


def time_to_ready(settings: Settings, log_dir: Path, timeout: float, *, keep: bool = False) -> tuple[float, Workers]:
    """Seconds from a worker's start to its /readyz 200 (it then stops unless ``keep``)."""
    started = time.monotonic()
    worker = Workers([settings], log_dir, log_level="info")
    try:
        while ready_partitions(settings) is None:
            worker.assert_running()
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"worker not ready within {timeout} s; see {log_dir}")
            time.sleep(0.1)
        return time.monotonic() - started, worker
    finally:
        if not keep:
            worker.stop()


def build_state(cluster: LocalKafkaCluster, entities: int, scratch: Path, timeout: float) -> Settings:
    """One worker folds an OrderCreated for each entity: one changelog record per entity."""
    settings = cluster_settings(cluster.bootstrap_servers, scratch / "build")
    publish_raw(settings, order_records(entities, 1))
    _, builder = time_to_ready(settings, scratch, timeout, keep=True)
    started = time.monotonic()
    try:
        while changelog_records(settings) < entities:
            builder.assert_running()
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"state not built within {timeout} s; see {scratch}")
            time.sleep(2)
    finally:
        builder.stop()
    return settings


def recovery_runs(cluster: LocalKafkaCluster, entities: int, stores: list[str], scratch: Path,
                  timeout: float, console: Console) -> list[RecoveryRow]:
    settings = build_state(cluster, entities, scratch / "build", timeout)
    records = changelog_records(settings)
    console.print(f"state built: {entities:,} entities, {records:,} changelog records")
    rows = []
    for store in stores:
        url = f"{store}://"
        empty = cluster_settings(cluster.bootstrap_servers, scratch / f"empty-{store}", store=url)
        baseline, _ = time_to_ready(empty, scratch / "logs", timeout)
        fresh = on_own_port(settings, data_dir=scratch / f"fresh-{store}", store=url)
        to_ready, _ = time_to_ready(fresh, scratch / "logs", timeout)
        rows.append(RecoveryRow(f"{store}, empty data dir", entities, records, to_ready, baseline))
        console.print(f"{store}: ready after {to_ready:.1f} s (start-up without state {baseline:.1f} s)")
        if store == "rocksdb":
            again, _ = time_to_ready(fresh, scratch / "logs", timeout)
            rows.append(RecoveryRow("rocksdb, restarted on its data dir", entities, records, again, baseline,
                                    from_changelog=False))
            console.print(f"rocksdb restarted on its data dir: ready after {again:.1f} s")
    return rows


def print_throughput(console: Console, rows: list[ThroughputRow], events: int, orders: int) -> None:
    one = rows[0]
    table = Table("workers", "events/s", "ratio to 1 worker", "worker CPU s", "CPU ratio to 1 worker",
                  "until settled s", "wall s", "label versions", "duplicates", "same versions as the re-fold",
                  title=f"{events:,} order events over {orders:,} orders, 3 brokers (RF 3, min ISR 2), 6 partitions")
    for row in rows:
        table.add_row(str(row.workers), f"{row.events_per_s:,.0f}", f"{row.events_per_s / one.events_per_s:.2f}",
                      f"{row.cpu_s:.0f}", f"{row.cpu_s / max(one.cpu_s, 1e-3):.2f}", f"{row.settle_s:.1f}",
                      f"{row.wall_s:.1f}", f"{row.versions:,}", f"{row.duplicates:,}", row.same)
    console.print(table)


def print_recovery(console: Console, rows: list[RecoveryRow]) -> None:
    table = Table("fresh worker", "entities", "changelog records", "start -> /readyz 200 s",
                  "start-up without state s", "changelog records/s", "s per million entities",
                  title="State recovery from the changelog (6 partitions, all moving to one new worker)")
    for row in rows:
        per_million = (row.to_ready_s - row.baseline_s) / row.entities * 1e6
        rate, per_million = (f"{row.records_per_s:,.0f}", f"{per_million:.0f}") if row.from_changelog else \
            ("(from its disk)", "-")
        table.add_row(row.store, f"{row.entities:,}", f"{row.changelog_records:,}", f"{row.to_ready_s:.1f}",
                      f"{row.baseline_s:.1f}", rate, per_million)
    console.print(table)


def available_stores() -> list[str]:
    try:
        import rocksdict  # noqa: F401
    except ImportError:
        return ["memory"]
    return ["memory", "rocksdb"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=50_000)
    parser.add_argument("--events-per-order", type=int, default=10)
    parser.add_argument("--workers", default="1,2,3", help="worker counts to run, comma-separated")
    parser.add_argument("--recovery-entities", type=int, default=1_000_000)
    parser.add_argument("--stores", default=",".join(available_stores()), help="memory, rocksdb (needs the extra)")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-recovery", action="store_true")
    parser.add_argument("--timeout", type=float, default=1800.0, help="longest wait for any one run, s")
    parser.add_argument("--keep", type=Path, default=None, help="run in this folder and keep it (logs, data)")
    args = parser.parse_args()
    console = Console(width=None if sys.stdout.isatty() else 160)
    with tempfile.TemporaryDirectory() as temporary:
        scratch = args.keep or Path(temporary)
        scratch.mkdir(parents=True, exist_ok=True)
        with LocalKafkaCluster(LocalKafkaSettings(), nodes=3, data_dir=scratch / "kafka") as cluster:
            throughput, recovery = [], []
            if not args.skip_throughput:
                records = list(order_records(args.orders, args.events_per_order))
                for count in (int(n) for n in args.workers.split(",")):
                    throughput.append(throughput_run(cluster, records, count, scratch / f"run-{count}", args.timeout))
                    row = throughput[-1]
                    console.print(f"{count} worker(s): {row.events_per_s:,.0f} events/s, {row.versions:,} versions, "
                                  f"same: {row.same}")
            if not args.skip_recovery:
                recovery = recovery_runs(cluster, args.recovery_entities, args.stores.split(","),
                                         scratch / "recovery", args.timeout, console)
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    console.print(f"{os.cpu_count()} cores shared by the brokers, the workers and whatever else runs; "
                  f"load average at the end: {load}")
    if throughput:
        print_throughput(console, throughput, args.orders * args.events_per_order, args.orders)
    if recovery:
        print_recovery(console, recovery)


if __name__ == "__main__":
    main()
