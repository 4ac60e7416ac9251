"""Bad input at scale: a real worker's throughput on good events with malformed records among them.

    .venv/bin/python bench/bad_input.py --good 100000 --bad 10000 --rounds 2

One local broker. Each run publishes to topics of its own, then starts a worker (processors.worker,
default settings) and lets it process everything:
  clean   the good events alone (the fraud example's demo data, orders and content)
  mixed   the same good events with --bad malformed records at random places among them: the ten
          kinds of tests/processors/malformed.py in equal numbers, produced straight with
          confluent-kafka (past the SDK's checks), the oversize ones compressed
Runs alternate (clean, mixed, then mixed, clean, ...) so neither always meets a warmer broker.

Good events/s: the good events processed between two moments of the worker's output, over the
time between them. The output is every label version and dead letter; each names the record that
caused it (topic, partition, offset), and a partition is processed in order, so at a moment every
good record up to the highest causing offset written by then is processed. The first moment is
when 5% of the output was written (start-up and the group's first assignment are over), the last
is the last output.

Checks, per mixed run: each malformed record is in the dead-letter topic once, by its position,
with an error type of its kind (``EXPECTED``); no good record is; the label versions are the clean
run's (same ids, entities, values, previous values and event times: lost good events would show
as missing or different versions); the worker never exited and no agent failed.
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from random import Random

from confluent_kafka import Producer
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests' malformed records
import example  # the fraud example repository
from labelstore.events.admin import ensure_topics
from labelstore.events.publisher import producer_config
from labelstore.events.reader import count_records, read_raw
from labelstore.localkafka import LocalKafkaCluster
from labelstore.localkafka.cluster import free_port
from labelstore.processors.dead_letters import (
    ERROR_REASON, ERROR_TYPE, SOURCE_OFFSET, SOURCE_PARTITION, SOURCE_TOPIC)
from labelstore.processors.launcher import start_worker_process
from labelstore.processors.refold import uninterrupted_versions
from labelstore.settings import (
    KafkaSettings, LocalKafkaSettings, ProcessorSettings, Settings, TopicSettings)
from tests.processors.malformed import EXPECTED, KINDS, MalformedRecords

Position = tuple[str, int, int]  # topic, partition, offset
RATE_SKIP = 0.05
STALLED_S = 90


class Published:
    """Where each record of a run went: good positions, and the kind of each malformed one."""

    def __init__(self) -> None:
        self.good: set[Position] = set()
        self.bad: dict[Position, str] = {}

    def delivered(self, kind: str | None):
        def record(error, message) -> None:
            if error is not None:
                raise RuntimeError(f"publishing failed: {error}")
            position = (message.topic(), message.partition(), message.offset())
            if kind is None:
                self.good.add(position)
            else:
                self.bad[position] = kind
        return record


def fresh_settings(bootstrap: str, data_dir: Path) -> Settings:
    settings = Settings(
        kafka=KafkaSettings(bootstrap_servers=bootstrap),
        topics=TopicSettings(prefix=f"bad{uuid.uuid4().hex[:8]}."),
        processor=ProcessorSettings(data_dir=data_dir, web_port=free_port(), session_timeout_s=6.0),
    )
    ensure_topics(settings)
    return settings


def publish(settings: Settings, good: list[tuple[str, bytes, bytes]], bad: int, seed: int) -> Published:
    """The good records in order, with ``bad`` malformed ones made as they are sent (the oversize
    ones are a megabyte each: holding them all would take gigabytes)."""
    rng = Random(seed)
    makers = MalformedRecords(example.EXAMPLE.codec, max_event_bytes=settings.processor.max_event_bytes, seed=seed)
    events = _sample_events(seed)
    bad_at = set(rng.sample(range(len(good) + bad), bad))
    kinds = itertools.cycle(KINDS)
    # Past librdkafka's 1,000,000 bytes: the broker takes an oversize record compressed.
    producer = Producer(producer_config(settings, **{"message.max.bytes": 8 * settings.processor.max_event_bytes,
                                                     "linger.ms": 20}))
    published, good_records = Published(), iter(good)
    for index in range(len(good) + bad):
        if index in bad_at:
            item = makers.make(next(kinds), rng.choice(events))
            entity_type, key, value, kind = item.entity_type, item.key, item.value, item.kind
        else:
            (entity_type, key, value), kind = next(good_records), None
        while True:
            try:
                producer.produce(settings.topics.events_topic(entity_type), key=key, value=value,
                                 on_delivery=published.delivered(kind))
                break
            except BufferError:
                producer.poll(0.05)
    if producer.flush(300):
        raise RuntimeError("records left unsent")
    return published


def _sample_events(seed: int) -> list:
    return list(itertools.islice(example.generate(400, 100, seed=seed + 1), 2_000))


def good_records(count: int, seed: int) -> list[tuple[str, bytes, bytes]]:
    from labelstore.events.wire import EventSerializer

    serializer = EventSerializer(example.EXAMPLE.codec, example.EXAMPLE.event_types)
    events = itertools.islice(example.generate(count * 45 // 100, count * 5 // 100, seed=seed), count)
    return [(e.entity_type, e.entity_id.encode(), serializer.encode(e)) for e in events]


def run_worker(settings: Settings, log: Path, progress, done, timeout: float = 1800) -> int:
    """Run a worker until ``done()``, or until ``progress()`` stands still for ``STALLED_S`` (the
    checks then show what is missing); returns how often it exited by itself (a crash: 0 expected)."""
    worker = start_worker_process(settings, log, log_level="warning")
    deadline = time.monotonic() + timeout
    last, moved_at = None, time.monotonic()
    try:
        while not done():
            if worker.poll() is not None:
                return 1
            if time.monotonic() > deadline:
                raise RuntimeError(f"the worker did not finish within {timeout:.0f} s; see {log}")
            now = progress()
            if now != last:
                last, moved_at = now, time.monotonic()
            elif last and time.monotonic() - moved_at > STALLED_S:
                print(f"no output for {STALLED_S} s: stopping the worker short of the end; see {log}")
                break
            time.sleep(1)
        return 0 if worker.poll() is None else 1
    finally:
        worker.terminate()
        worker.wait(30)


def outputs(settings: Settings) -> tuple[list[tuple[int, Position]], dict, dict[Position, tuple[str, str]]]:
    """(log-append time, causing position) of every output; the versions by id; the dead letters."""
    from labelstore.labels import LabelVersion

    written, versions, dead = [], {}, {}
    for _, value, _, _, timestamp, _ in read_raw(settings, settings.topics.label_versions_topic, timeout=300):
        version = LabelVersion.from_json(value)
        cause = version.caused_by
        written.append((timestamp, (cause.topic, cause.partition, cause.offset)))
        versions[version.version_id] = (version.entity_id, version.label, version.value, version.previous_value,
                                        version.event_time)
    for _, _, _, _, timestamp, headers in read_raw(settings, settings.topics.dead_letter_topic, timeout=300):
        header = {name: value.decode() for name, value in headers}
        position = (header[SOURCE_TOPIC], int(header[SOURCE_PARTITION]), int(header[SOURCE_OFFSET]))
        written.append((timestamp, position))
        if position in dead:
            raise RuntimeError(f"{position} dead-lettered twice")
        dead[position] = (header[ERROR_TYPE], header[ERROR_REASON])
    written.sort()
    return written, versions, dead


def good_rate(written: list[tuple[int, Position]], good: set[Position]) -> float:
    """Good events per second between the ``RATE_SKIP`` moment of the output and its end."""
    offsets: dict[tuple[str, int], list[int]] = defaultdict(list)
    for topic, partition, offset in good:
        offsets[(topic, partition)].append(offset)
    for values in offsets.values():
        values.sort()

    def covered(until_ms: int) -> int:
        highest: dict[tuple[str, int], int] = {}
        for timestamp, (topic, partition, offset) in written:
            if timestamp > until_ms:
                break
            highest[(topic, partition)] = max(highest.get((topic, partition), -1), offset)
        return sum(bisect.bisect_right(offsets[where], offset) for where, offset in highest.items())

    start, end = written[int(len(written) * RATE_SKIP)][0], written[-1][0]
    return (covered(end) - covered(start)) / ((end - start) / 1000)


def one_run(cluster: LocalKafkaCluster, scratch: Path, name: str, good: list, bad: int, seed: int,
            expected_versions: int | None) -> dict:
    """A run's measures; without ``expected_versions`` (the first run) a re-fold of its log says
    how many label versions mark its end."""
    settings = fresh_settings(cluster.bootstrap_servers, scratch / f"{name}-data")
    published = publish(settings, good, bad, seed)
    versions_topic, dlq = settings.topics.label_versions_topic, settings.topics.dead_letter_topic
    if expected_versions is None:
        expected_versions = len(uninterrupted_versions(settings))

    def progress() -> tuple[int, int]:
        return count_records(settings, versions_topic), count_records(settings, dlq)

    def done() -> bool:
        versions, dead = progress()
        return versions >= expected_versions and dead >= len(published.bad)

    log = scratch / f"{name}.log"
    exits = run_worker(settings, log, progress, done)
    written, versions, dead = outputs(settings)
    return {"name": name, "expected_versions": expected_versions, "published": published, "rate": good_rate(written, published.good), "versions": versions,
            "dead": dead, "crashes": exits + log.read_text().count("events stopped")}


def check_mixed(mixed: dict, clean: dict) -> dict:
    published, dead = mixed["published"], mixed["dead"]
    sent = Counter(published.bad.values())
    in_dlq = Counter(published.bad[p] for p in dead if p in published.bad)
    right_kind = Counter(published.bad[p] for p, (error, reason) in dead.items()
                         if p in published.bad and error in EXPECTED[published.bad[p]] and reason)
    samples = {}
    for position, (error, reason) in sorted(dead.items()):
        kind = published.bad.get(position)
        if kind is not None and kind not in samples:
            # A payload's reason names its fields on the lines after the first.
            samples[kind] = f"{error}: {' '.join(reason.split())[:130]}"
    good_dead = sum(1 for p in dead if p in published.good)
    bad_missing = sum(1 for p in published.bad if p not in dead)
    missing = sum(1 for k, v in clean["versions"].items() if mixed["versions"].get(k) != v)
    extra = len(set(mixed["versions"]) - set(clean["versions"]))
    return {"sent": sent, "in_dlq": in_dlq, "right_kind": right_kind, "samples": samples,
            "good_dead": good_dead, "bad_missing": bad_missing, "versions_missing_or_different": missing,
            "versions_extra": extra}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--good", type=int, default=100_000)
    parser.add_argument("--bad", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=2, help="pairs of runs (clean + mixed)")
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    console = Console(width=160)
    good = good_records(args.good, args.seed)
    runs = []
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        with LocalKafkaCluster(LocalKafkaSettings(), data_dir=scratch / "kafka") as cluster:
            expected = None
            for round_ in range(args.rounds):
                order = ("clean", "mixed") if round_ % 2 == 0 else ("mixed", "clean")
                for name in order:
                    bad = args.bad if name == "mixed" else 0
                    run = one_run(cluster, scratch, f"{name}-{round_}", good, bad, args.seed + round_, expected)
                    expected = run["expected_versions"]  # the same good events give the same versions
                    runs.append(run)
                    console.print(f"{run['name']}: {run['rate']:,.0f} good events/s, crashes {run['crashes']}")
    report(console, runs, args)


def report(console: Console, runs: list[dict], args) -> None:
    clean = [r for r in runs if r["name"].startswith("clean")]
    mixed = [r for r in runs if r["name"].startswith("mixed")]
    checks = [check_mixed(m, clean[0]) for m in mixed]
    kinds = Table("kind", "sent", "in DLQ", "right kind", "reason (sample)",
                  title=f"{args.bad:,} malformed among {args.good:,} good events (mixed run 1)")
    first = checks[0]
    for kind in KINDS:
        kinds.add_row(kind, f"{first['sent'][kind]:,}", f"{first['in_dlq'][kind]:,}", f"{first['right_kind'][kind]:,}",
                      first["samples"].get(kind, "-"))
    kinds.add_row("total", f"{sum(first['sent'].values()):,}", f"{sum(first['in_dlq'].values()):,}",
                  f"{sum(first['right_kind'].values()):,}", "")
    console.print(kinds)
    clean_rate = statistics.median(r["rate"] for r in clean)
    mixed_rate = statistics.median(r["rate"] for r in mixed)
    summary = Table("measure", "value", title="clean vs mixed (one worker, one local broker)")
    for run in runs:
        summary.add_row(f"good events/s, {run['name']}", f"{run['rate']:,.0f}")
    for round_, (one_clean, one_mixed) in enumerate(zip(clean, mixed, strict=True)):
        summary.add_row(f"mixed / clean, round {round_} (target >= 0.8)", f"{one_mixed['rate'] / one_clean['rate']:.2f}")
    summary.add_row("mixed / clean, medians (target >= 0.8)", f"{mixed_rate / clean_rate:.2f}")
    summary.add_row("good records dead-lettered (must be 0)", str(sum(c["good_dead"] for c in checks)))
    summary.add_row("malformed records not dead-lettered (must be 0)", str(sum(c["bad_missing"] for c in checks)))
    summary.add_row("label versions missing or different vs clean (lost good events; must be 0)",
                    str(sum(c["versions_missing_or_different"] for c in checks)))
    summary.add_row("label versions not in the clean run (must be 0)", str(sum(c["versions_extra"] for c in checks)))
    summary.add_row("crashes: worker exits or failed agents (must be 0)", str(sum(r["crashes"] for r in runs)))
    console.print(summary)


if __name__ == "__main__":
    main()
