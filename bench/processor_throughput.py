"""Label processor throughput and latency, against a bare confluent-kafka loop with the same logic.

    python bench/processor_throughput.py --orders 100000 --events-per-order 10

One local broker, one run, every implementation on the same pre-published events:
  bare loop        confluent-kafka consume -> EntityProcessor (decode, fold, DuckDB rules) -> produce
                   versions, latest labels and the state changelog: the Python limit of this logic
  faust/aiokafka   the labelstore processor (processors.worker), default transport
  faust/confluent  the same with Faust's confluent-kafka transport
  quix streams     the same logic written with Quix Streams (bench/processor_quix.py), run in a
                   virtual environment of its own created on first use (bench/requirements-quix.txt)
Throughput is the events processed between two moments of the output, over the time between them
(see ``emitted_versions``), so start-up and group rebalancing are not counted (consumer groups use
6 s session timeouts). Every implementation must emit the bare loop's label versions: the table
says whether the versions (id, value, previous value, causing partition and offset, partition
written) are the same. Latency: at a steady --rate events/s, the time from
an event's log-append on the events topic to its label's log-append on labels.latest, measured
after a paced warm-up (reported apart: a fresh broker compiles its hot code meanwhile).
"""

from __future__ import annotations

import argparse
import collections
import itertools
import json
import os
import subprocess
import sys
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from random import Random

from confluent_kafka import Consumer, Producer
from rich.console import Console
from rich.table import Table

import example  # noqa: F401  (the fraud example repository)
from labelstore.events.admin import TopicSpec, ensure_topics, topic_specs
from labelstore.events.publisher import producer_config
from labelstore.events.reader import count_records, read_raw
from labelstore.declarations import load_declarations
from labelstore.labels import LabelVersion
from labelstore.localkafka import LocalKafkaCluster
from labelstore.localkafka.cluster import free_port
from labelstore.rules.model import load_rules
from labelstore.settings import KafkaSettings, LocalKafkaSettings, ProcessorSettings, Settings, TopicSettings
from labelstore.processors.core import EntityProcessor, RawMessage, encode_record
from labelstore.processors.launcher import start_worker_process
from labelstore.schemas.codec import AvroCodec

import worker_profile  # beside this script

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ADDRESS = {"line1": "1 Bench Road", "city": "Berlin", "postal_code": "10115", "country": "DE"}


def order_records(orders: int, per_order: int, seed: int = 1) -> Iterator[tuple[bytes, bytes]]:
    """(key, Avro bytes) of ``orders`` lifecycles of ``per_order`` events, interleaved in rounds."""
    codec, rng = AvroCodec(), Random(seed)
    for step in range(per_order):
        for number in range(orders):
            order_id = f"order-{number:07d}"
            event_type, payload = _step(step, rng)
            record = {"event_id": uuid.UUID(int=rng.getrandbits(128), version=4), "entity_type": "order",
                      "entity_id": order_id, "event_type": event_type, "source": "bench",
                      "event_time": T0 + timedelta(minutes=step, milliseconds=number), "payload": payload}
            yield order_id.encode(), codec.encode(event_type, record)


def _step(step: int, rng: Random) -> tuple[str, dict]:
    if step == 0:
        return "OrderCreated", {"customer_id": "c", "amount_cents": 100, "currency": "EUR", "shipping_address": ADDRESS}
    kind = (step - 1) % 4
    if kind == 0:
        fraud = rng.random() < 0.3
        return "OrderClassified", {"classification": "FRAUD" if fraud else "NOT_FRAUD", "model_score": 0.5, "model_version": "v1"}
    if kind in (1, 2):
        model = "OrderTagged" if kind == 1 else "OrderUntagged"
        return model, {"tag": rng.choice(["false-negative", "vip"]), "team": "review"}
    return "OrderUpdated", {"shipping_address": {**ADDRESS, "country": rng.choice(["DE", "GB"])}, "amount_cents": None}


def fresh_settings(bootstrap: str, data_dir: Path, **processor: object) -> Settings:
    settings = Settings(
        kafka=KafkaSettings(bootstrap_servers=bootstrap),
        topics=TopicSettings(prefix=f"bench{uuid.uuid4().hex[:8]}."),
        processor=ProcessorSettings(data_dir=data_dir, web_port=free_port(), session_timeout_s=6.0, **processor),
    )
    changelog = TopicSpec(bare_changelog(settings), settings.kafka.partitions, 1, {"cleanup.policy": "compact"})
    ensure_topics(settings, [*topic_specs(settings), changelog])
    return settings


def bare_changelog(settings: Settings) -> str:
    return settings.topics.prefix + "bare-order-state-changelog"


def publish_raw(settings: Settings, records: Iterator[tuple[bytes, bytes]], rate: float | None = None,
                producer: Producer | None = None) -> int:
    producer = producer or Producer(producer_config(settings))
    topic = settings.topics.events_topic("order")
    started, count = time.perf_counter(), 0
    for key, value in records:
        while True:
            try:
                producer.produce(topic, key=key, value=value)
                break
            except BufferError:
                producer.poll(0.05)
        count += 1
        if rate is not None and count % 20 == 0:
            producer.poll(0)
            time.sleep(max(0.0, started + count / rate - time.perf_counter()))
    assert producer.flush(120) == 0
    return count


def bare_loop(settings: Settings, events: int) -> None:
    """The same processing, without a stream framework: consume, process, produce, repeat."""
    processor = EntityProcessor(load_declarations()["order"], [r for r in load_rules() if r.entity_type == "order"])
    topics = settings.topics
    consumer = Consumer({"bootstrap.servers": settings.kafka.bootstrap_servers, "group.id": f"bare-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "queued.min.messages": 200_000, "fetch.queue.backoff.ms": 10})
    consumer.subscribe([topics.events_topic("order")])
    producer = Producer(producer_config(settings, **{"linger.ms": 20}))
    changelog = bare_changelog(settings)
    store: dict = {}
    consumed = 0
    while consumed < events:
        messages = [m for m in consumer.consume(1_000, timeout=1.0) if m.error() is None]
        batch = [RawMessage(m.topic(), m.partition(), m.offset(), m.timestamp()[1], m.key(), m.value()) for m in messages]
        result = processor.process(batch, store.get)
        for version in result.versions:
            value, partition = version.to_json(), version.caused_by.partition
            _produce(producer, topics.label_versions_topic, version.entity_id.encode(), value, partition)
            _produce(producer, topics.label_latest_topic, version.latest_key, value, partition)
        for key, record in result.records.items():
            _produce(producer, changelog, key, encode_record(record), None)
        store.update(result.records)
        consumed += len(batch)
        producer.poll(0)
    assert producer.flush(60) == 0
    consumer.close()


def _produce(producer: Producer, topic: str, key: bytes, value: bytes, partition: int | None) -> None:
    while True:
        try:
            if partition is None:
                producer.produce(topic, key=key, value=value)
            else:
                producer.produce(topic, key=key, value=value, partition=partition)
            return
        except BufferError:
            producer.poll(0.05)


def emitted_versions(settings: Settings) -> tuple[int, float, collections.Counter]:
    """How many versions were emitted, the events/s they show, and what they say.

    The rate counts the events processed between two moments of the output: the moment the first
    ``RATE_SKIP`` of the versions had been written (start-up and group rebalancing are over) and the
    last version. Partitions are processed in order, so by the time a version is written every
    earlier event of its partition has been processed: the events covered at a moment are, per
    partition, one more than the highest causing offset written by then. Dividing all events by
    the time from the first version to the last would flatter an implementation that writes in
    bursts (Quix's sink writes at each checkpoint): the events of its first burst would count, the
    time spent on them would not.

    What the versions say leaves out what differs between runs on different topics: the topic
    names and the log-append times.
    """
    written, contents = [], collections.Counter()
    for _, value, partition, _, timestamp, _ in read_raw(settings, settings.topics.label_versions_topic):
        version = json.loads(value)
        cause = version["caused_by"]
        written.append((timestamp, cause["partition"], cause["offset"]))
        contents[(version["version_id"], version["value"], version["previous_value"], version["event_time"],
                  cause["partition"], cause["offset"], partition)] += 1
    written.sort()
    start, end = written[int(len(written) * RATE_SKIP)][0], written[-1][0]
    covered_at_start: dict[int, int] = {}
    covered_at_end: dict[int, int] = {}
    for timestamp, partition, offset in written:
        if timestamp <= start:
            covered_at_start[partition] = max(covered_at_start.get(partition, -1), offset)
        covered_at_end[partition] = max(covered_at_end.get(partition, -1), offset)
    events = sum(covered_at_end.values()) - sum(covered_at_start.values()) + len(covered_at_end) - len(covered_at_start)
    return len(written), events / ((end - start) / 1000), contents


RATE_SKIP = 0.05


def same_as(expected: collections.Counter, emitted: collections.Counter) -> str:
    if emitted == expected:
        return "yes"
    return f"NO: {sum((expected - emitted).values()):,} missing, {sum((emitted - expected).values()):,} extra"


QUIX_VENV = Path.home() / ".cache" / "labelstore" / "bench-quix-venv"
REPOSITORY = Path(__file__).resolve().parents[1]
QUIX_REQUIREMENTS = REPOSITORY / "bench" / "requirements-quix.txt"


def quix_python() -> Path:
    """The Quix Streams environment's interpreter: created on first use, updated when the pins change.

    Quix pins an older confluent-kafka than the project's, so it never goes into the project's
    environment. The project goes in editable and without its dependencies: its subpackages are
    its top-level folders (``labelstore.events`` is ``events/``), which only its installed finder
    maps.
    """
    python = QUIX_VENV / "bin" / "python"
    installed = QUIX_VENV / "installed-requirements.txt"
    wanted = f"{QUIX_REQUIREMENTS.read_text()}\n# and, editable: {REPOSITORY}\n"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(QUIX_VENV)], check=True)
    if not installed.exists() or installed.read_text() != wanted:
        subprocess.run([str(python), "-m", "pip", "install", "-q", "-r", str(QUIX_REQUIREMENTS)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "-e", str(REPOSITORY)], check=True)
        installed.write_text(wanted)
    return python


def faust_floor(settings: Settings, events: int, scratch_path: Path, timeout: float = 1800) -> float:
    """Events/s of an agent that only takes and acknowledges the events (bench/faust_floor.py)."""
    result = scratch_path / "floor.rate"
    env = {**os.environ, "PYTHONPATH": str(REPOSITORY), "BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
           "EVENTS_TOPIC": settings.topics.events_topic("order"), "EXPECTED": str(events), "RESULT": str(result),
           "DATA_DIR": str(scratch_path / "floor-data")}
    with (scratch_path / "floor.log").open("ab") as log:
        worker = subprocess.Popen([sys.executable, str(REPOSITORY / "bench" / "faust_floor.py"), "worker"], env=env,
                                  stdout=log, stderr=log)
    deadline = time.monotonic() + timeout
    try:
        while not result.exists():
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the empty agent stopped or timed out; see {scratch_path / 'floor.log'}")
            time.sleep(0.5)
        time.sleep(0.2)  # the file is written in one call; let it land
        return float(result.read_text())
    finally:
        worker.terminate()
        worker.wait(30)


def start_quix_process(settings: Settings, log: Path, state_dir: Path) -> subprocess.Popen:
    topics = settings.topics
    env = {**os.environ, "PYTHONPATH": str(REPOSITORY), "BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
           "EVENTS_TOPIC": topics.events_topic("order"), "VERSIONS_TOPIC": topics.label_versions_topic,
           "LATEST_TOPIC": topics.label_latest_topic, "STATE_DIR": str(state_dir)}
    with log.open("ab") as output:
        return subprocess.Popen([str(quix_python()), str(REPOSITORY / "bench" / "processor_quix.py")], env=env,
                                stdout=output, stderr=output)


def run_worker_until(settings: Settings, expected_versions: int, log: Path, timeout: float = 1800,
                     start=None, on_running=None) -> None:
    """Run a worker until it wrote the expected versions; ``on_running(worker)`` once it writes."""
    worker = start() if start is not None else start_worker_process(settings, log, log_level="warning")
    deadline = time.monotonic() + timeout
    try:
        while (written := count_records(settings, settings.topics.label_versions_topic)) < expected_versions:
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker stopped or timed out; see {log}")
            if written and on_running is not None:
                on_running(worker)
                on_running = None
            time.sleep(1)
    finally:
        worker.terminate()
        worker.wait(30)


def latency(settings: Settings, records: list[tuple[bytes, bytes]], rate: float, log: Path,
            warmup_s: float = 0.0) -> tuple[list[float], list[float]]:
    """Milliseconds from an event's log-append to its label's log-append on labels.latest: for the
    events of the first ``warmup_s`` seconds of the paced run, and for those after them.

    The first seconds of traffic are not a steady state: the worker's first queries, collections
    and group bookkeeping, and above all the broker's JIT compilation, which on a 2-core machine
    shared with the broker takes about a core for the first ~30 s of traffic (``jstat -compiler``:
    27 s of compilation between the 8th and the 33rd second of a paced run), so the worker and
    the broker compete for the other one."""
    worker = start_worker_process(settings, log, log_level="warning")
    try:
        # Warm up with a lifecycle that yields a label: the worker is then assigned and running,
        # and the publisher connected (a new producer's first second of events would reach the
        # log in one burst, not at the steady rate).
        producer = Producer(producer_config(settings))
        publish_raw(settings, order_records(1, 2, seed=99), producer=producer)
        while count_records(settings, settings.topics.label_versions_topic) == 0:
            if worker.poll() is not None:
                raise RuntimeError(f"worker stopped; see {log}")
            time.sleep(0.2)
        paced_since_ms = time.time() * 1000
        paced_from_ms = paced_since_ms + warmup_s * 1000
        publish_raw(settings, iter(records), rate=rate, producer=producer)
        time.sleep(5)
    finally:
        worker.terminate()
        worker.wait(30)
    warming, steady = [], []
    for _, value, _, _, timestamp, _ in read_raw(settings, settings.topics.label_latest_topic):
        version = LabelVersion.from_json(value)
        if version.recorded_at >= paced_since_ms:  # not the worker's start-up lifecycle
            (steady if version.recorded_at >= paced_from_ms else warming).append(timestamp - version.recorded_at)
    return warming, steady


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--events-per-order", type=int, default=10)
    parser.add_argument("--rate", type=float, default=2_000.0, help="events/s of the latency run")
    parser.add_argument("--latency-seconds", type=float, default=60.0, help="measured")
    parser.add_argument("--warmup-seconds", type=float, default=30.0,
                        help="paced, before the measured seconds (reported apart)")
    parser.add_argument("--transports", default="aiokafka",
                        help="Faust transports, comma-separated; confluent:// cannot finish (docs/decisions.md)")
    parser.add_argument("--peers", default="quix", help="quix, or empty for none")
    parser.add_argument("--floor", action="store_true",
                        help="also run an empty Faust agent (take and acknowledge only): Faust's own ceiling")
    parser.add_argument("--skip-throughput", action="store_true", help="only the latency run")
    parser.add_argument("--metrics-rounds", type=int, default=0,
                        help="also run faust/aiokafka this many times with its Prometheus metrics off and on, "
                             "alternately, and print the ratio (the cost of the metrics)")
    parser.add_argument("--profile-seconds", type=float, default=0.0,
                        help="sample each Faust worker this long with py-spy and print where its CPU goes "
                             "(PROFILE_RAW=file keeps py-spy's raw samples)")
    args = parser.parse_args()
    console = Console(width=None if sys.stdout.isatty() else 120)
    records = [] if args.skip_throughput else list(order_records(args.orders, args.events_per_order))
    with tempfile.TemporaryDirectory() as scratch:
        scratch_path = Path(scratch)
        with LocalKafkaCluster(LocalKafkaSettings(), data_dir=scratch_path / "kafka") as cluster:
            profiles: list = []
            rows = [] if args.skip_throughput else throughput(console, cluster, records, args.transports, scratch_path,
                                                              args.peers, args.profile_seconds, profiles, args.floor,
                                                              args.metrics_rounds)
            paced_seconds = args.warmup_seconds + args.latency_seconds
            paced = list(itertools.islice(order_records(10_000, 1_000, seed=2), int(args.rate * paced_seconds)))
            settings = fresh_settings(cluster.bootstrap_servers, scratch_path / "latency")
            warming, latencies = latency(settings, paced, args.rate, scratch_path / "latency.log",
                                         args.warmup_seconds)
    if rows:
        print_throughput(console, rows, len(records), args.orders)
        print_metrics_cost(console, rows)
    for transport, parts in zip(filter(None, args.transports.split(",")), profiles):
        print_profile(console, f"faust/{transport}", parts, args.profile_seconds)
    console.print(f"latency at {args.rate:,.0f} events/s (faust/aiokafka), event appended -> label appended:")
    for phase, values in ((f"{args.latency_seconds:.0f} s after the warm-up", latencies),
                          (f"warm-up, the first {args.warmup_seconds:.0f} s", warming)):
        console.print(f"  {phase} ({len(values):,} label changes): p50 {percentile(values, 50):.0f} ms, "
                      f"p99 {percentile(values, 99):.0f} ms, max {max(values, default=float('nan')):.0f} ms")


def throughput(console: Console, cluster: LocalKafkaCluster, records: list, transports: str,
               scratch_path: Path, peers: str = "quix", profile_seconds: float = 0.0,
               profiles: list | None = None, floor: bool = False,
               metrics_rounds: int = 0) -> list[tuple[str, float, float, int, str]]:
    """(name, events/s, wall seconds, label versions, same as the bare loop's) of the bare loop, each
    Faust transport, the peers. With ``profile_seconds``, each Faust worker's CPU by part goes to
    ``profiles``."""
    settings = fresh_settings(cluster.bootstrap_servers, scratch_path / "bare")
    publish_raw(settings, iter(records))
    started = time.perf_counter()
    bare_loop(settings, len(records))
    wall = time.perf_counter() - started
    expected, rate, contents = emitted_versions(settings)
    rows = [("bare loop", rate, wall, expected, "(reference)")]
    console.print(f"bare loop: {expected:,} versions, {rate:,.0f} events/s")

    def measure(name: str, settings: Settings, log: Path, start=None, on_running=None) -> None:
        publish_raw(settings, iter(records))
        started = time.perf_counter()
        run_worker_until(settings, expected, log, start=start, on_running=on_running)
        wall = time.perf_counter() - started
        emitted, rate, emitted_contents = emitted_versions(settings)
        same = same_as(contents, emitted_contents)
        rows.append((name, rate, wall, emitted, same))
        console.print(f"{name}: {emitted:,} versions, {rate:,.0f} events/s, same versions: {same}")

    def profile_worker(worker: subprocess.Popen) -> None:
        if profile_seconds:
            keep = Path(os.environ["PROFILE_RAW"]) if os.environ.get("PROFILE_RAW") else None
            profiles.append(worker_profile.profile(worker.pid, profile_seconds, keep))

    for transport in filter(None, transports.split(",")):
        settings = fresh_settings(cluster.bootstrap_servers, scratch_path / transport, transport=transport)
        measure(f"faust/{transport}", settings, scratch_path / f"{transport}.log", on_running=profile_worker)
    for round_ in range(metrics_rounds):
        for metrics in (False, True):
            name = f"faust/aiokafka, metrics {'on' if metrics else 'off'}"
            settings = fresh_settings(cluster.bootstrap_servers, scratch_path / f"metrics-{round_}-{metrics}",
                                      metrics=metrics)
            measure(name, settings, scratch_path / f"metrics-{round_}-{metrics}.log")
    if floor:
        settings = fresh_settings(cluster.bootstrap_servers, scratch_path / "floor")
        publish_raw(settings, iter(records))
        started = time.perf_counter()
        rate = faust_floor(settings, len(records), scratch_path)
        rows.append(("faust floor: an empty agent", rate, time.perf_counter() - started, 0, "(no outputs)"))
        console.print(f"faust floor: {rate:,.0f} events/s")
    if "quix" in peers.split(","):
        quix_python()  # set up before the clock starts
        settings = fresh_settings(cluster.bootstrap_servers, scratch_path / "quix")
        log = scratch_path / "quix.log"
        measure("quix streams", settings, log,
                start=lambda: start_quix_process(settings, log, scratch_path / "quix-state"))
    return rows


def print_metrics_cost(console: Console, rows: list[tuple[str, float, float, int, str]]) -> None:
    """Best of the alternated runs with the metrics on, over the best with them off."""
    rates = {state: [rate for name, rate, *_ in rows if name == f"faust/aiokafka, metrics {state}"]
             for state in ("on", "off")}
    if rates["on"] and rates["off"]:
        console.print(f"metrics on / off (best of {len(rates['on'])} alternated runs each): "
                      f"{max(rates['on']):,.0f} / {max(rates['off']):,.0f} events/s = "
                      f"{max(rates['on']) / max(rates['off']):.3f}x")


def print_profile(console: Console, name: str, parts: collections.Counter, seconds: float) -> None:
    total = sum(parts.values()) or 1
    table = Table("part of the worker", "share of its CPU samples",
                  title=f"Where {name}'s CPU goes ({seconds:.0f} s at full speed, py-spy, GIL holders)")
    for part, samples in parts.most_common():
        table.add_row(part, f"{samples / total:.0%}")
    console.print(table)


def print_throughput(console: Console, rows: list, events: int, orders: int) -> None:
    bare_rate = rows[0][1]
    table = Table("implementation", "events/s", "ratio to bare loop", "wall s (incl. start-up)", "label versions",
                  "same versions as bare loop",
                  title=f"Label processor, {events:,} order events over {orders:,} orders (1 local broker)")
    for name, rate, wall, emitted, same in rows:
        table.add_row(name, f"{rate:,.0f}", f"{rate / bare_rate:.2f}", f"{wall:.1f}", f"{emitted:,}", same)
    console.print(table)


if __name__ == "__main__":
    main()
