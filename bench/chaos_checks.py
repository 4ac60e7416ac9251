"""What a chaos run must still hold once it is quiet: nothing lost, nothing made up, every view agrees.

The reference is an uninterrupted re-fold of the very log the workers read
(``labelstore.processors.refold``): the label versions emitted, deduplicated by ``version_id``,
must equal it field for field; ``labels.latest`` and the latest-label endpoint must hold each
entity's last version; the archive must hold every event once and every emitted version record.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from random import Random
from uuid import UUID

from labelstore.events.reader import read_raw
from labelstore.labels import LabelVersion
from labelstore.processors.client import LatestLabelsClient, ProcessorNotReadyError
from labelstore.settings import Settings
from labelstore.warehouse import Warehouse

EXAMPLES = 20  # ids kept per kind of finding, for the report
LatestKey = tuple[str, str, str]  # entity_type, entity_id, label


@dataclass
class VersionFindings:
    expected: int = 0
    records: int = 0  # records on labels.versions, duplicates included
    lost: int = 0
    extra: int = 0
    different: int = 0
    duplicates: int = 0
    examples: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class Staleness:
    """Event log-append time -> log-append time of the first record of the version it caused."""

    versions: int = 0
    worst_ms: int = 0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    worst_version: str = ""


def emitted_versions(settings: Settings) -> list[tuple[LabelVersion, int]]:
    """Every record on labels.versions (committed ones only) with its log-append time."""
    topic = settings.topics.label_versions_topic
    return [(LabelVersion.from_json(value), timestamp) for _, value, _, _, timestamp, _ in read_raw(settings, topic, timeout=300)]


def compare_versions(expected: dict[UUID, LabelVersion], emitted: list[tuple[LabelVersion, int]]) -> VersionFindings:
    unique = {version.version_id: version for version, _ in emitted}
    lost = [key for key in expected if key not in unique]
    extra = [key for key in unique if key not in expected]
    different = [key for key in expected if key in unique and unique[key] != expected[key]]
    return VersionFindings(
        expected=len(expected), records=len(emitted), lost=len(lost), extra=len(extra), different=len(different),
        duplicates=len(emitted) - len(unique),
        examples={kind: [_describe(expected.get(k) or unique[k]) for k in keys[:EXAMPLES]] for kind, keys in
                  (("lost", lost), ("extra", extra), ("different", different)) if keys})


def _describe(version: LabelVersion) -> str:
    """Where a version came from: enough to find the fault that made it go wrong."""
    cause = version.caused_by
    return (f"{version.entity_id} {version.label} {version.previous_value!r}->{version.value!r} caused by "
            f"{cause.topic}[{cause.partition}]@{cause.offset} recorded {version.recorded_at} ({version.version_id})")


def last_versions(expected: dict[UUID, LabelVersion]) -> dict[LatestKey, LabelVersion]:
    """Each entity's last version of each label: its events share one partition, so log order is offset order."""
    last: dict[LatestKey, LabelVersion] = {}
    for version in expected.values():
        key = (version.entity_type, version.entity_id, version.label)
        if key not in last or last[key].caused_by.offset < version.caused_by.offset:
            last[key] = version
    return last


def latest_topic_mismatches(settings: Settings, last: dict[LatestKey, LabelVersion]) -> tuple[int, list[str]]:
    """labels.latest, read whole (compaction may not have run): the last record of each key."""
    held: dict[bytes, bytes] = {}
    for key, value, *_ in read_raw(settings, settings.topics.label_latest_topic, timeout=300):
        held[key] = value
    wanted = {version.latest_key: version for version in last.values()}
    wrong = [key.decode() for key in wanted.keys() | held.keys()
             if key not in held or key not in wanted or LabelVersion.from_json(held[key]) != wanted[key]]
    return len(wrong), wrong[:EXAMPLES]


def endpoint_mismatches(urls: list[str], last: dict[LatestKey, LabelVersion], *, sample: int, seed: int,
                        settle_s: float = 60.0) -> tuple[int, int, list[str]]:
    """Ask the workers (round robin; each forwards to the owner) for the entities' labels; those
    that differ are asked again until ``settle_s`` has passed, since a worker that has just
    recovered its partitions may answer before its table is whole. (checked, wrong, examples)."""
    wanted: dict[tuple[str, str], dict[str, str]] = {}
    for (entity_type, entity_id, label), version in last.items():
        wanted.setdefault((entity_type, entity_id), {})[label] = str(version.version_id)
    entities = sorted(wanted)
    if len(entities) > sample:
        entities = Random(seed).sample(entities, sample)
    clients = [LatestLabelsClient(url, timeout=10) for url in urls]

    answers: dict[tuple[str, str], str] = {}

    def wrong(indexed: tuple[int, tuple[str, str]]) -> tuple[str, str] | None:
        index, entity = indexed
        client = clients[index % len(clients)]
        try:
            answer = client.entity(*entity) or {}
        except (ProcessorNotReadyError, OSError) as exc:
            answers[entity] = f"{client.base_url}: {exc}"
            return entity
        held = {name: v["version_id"] for name, v in answer.get("labels", {}).items()}
        if held == wanted[entity]:
            return None
        answers[entity] = f"{client.base_url} (forwarded to the owner): {held or 'no entity'}, folded through " \
                          f"{answer.get('last_offset')}; wanted {wanted[entity]}"
        return entity

    pending, deadline = entities, time.monotonic() + settle_s
    with ThreadPoolExecutor(8) as pool:
        while True:
            pending = [e for e in pool.map(wrong, enumerate(pending)) if e is not None]
            if not pending or time.monotonic() > deadline:
                break
            time.sleep(3)
    return len(entities), len(pending), [f"{t}/{i}: {answers.get((t, i))}" for t, i in pending[:EXAMPLES]]


def archive_findings(settings: Settings, emitted: list[tuple[LabelVersion, int]], ends: dict[str, dict[int, int]]) -> dict:
    """Every event (topic, partition, offset) archived once; every versions record archived once."""
    connection = Warehouse.of(settings).connect()
    try:
        rows = connection.execute("""
            SELECT topic, partition, count(*), count(DISTINCT "offset"), min("offset"), max("offset")
            FROM events GROUP BY ALL""").fetchall()
        archived_versions = Counter(dict(connection.execute(
            "SELECT version_id, count(*) FROM label_versions GROUP BY ALL").fetchall()))
    finally:
        connection.close()
    held = {(topic, partition): (count, distinct, low, high) for topic, partition, count, distinct, low, high in rows}
    missing = duplicated = 0
    for topic, partitions in ends.items():
        for partition, end in partitions.items():
            count, distinct, low, high = held.pop((topic, partition), (0, 0, 0, -1))
            duplicated += count - distinct
            # Offsets 0..end-1 with none twice and none outside: exactly the log.
            in_range = distinct if (low >= 0 and high < end) else 0
            missing += end - in_range
    published = Counter(str(version.version_id) for version, _ in emitted)
    return {"events_missing": missing, "events_duplicated": duplicated, "events_unknown_partitions": len(held),
            "versions_differing": sum(((published - archived_versions) + (archived_versions - published)).values())}


def labelstore_check(settings: Settings, log_path: Path) -> bool:
    env = {**os.environ, **settings.to_environment(), "COLUMNS": "200"}
    done = subprocess.run([sys.executable, "-m", "labelstore", "check"], env=env, capture_output=True, text=True,
                          timeout=600)
    log_path.write_text(done.stdout + done.stderr)
    return done.returncode == 0


def staleness(emitted: list[tuple[LabelVersion, int]], *, since_ms: int = 0) -> Staleness:
    """Over the versions caused by events appended from ``since_ms`` on."""
    first: dict[UUID, tuple[int, LabelVersion]] = {}
    for version, appended in emitted:
        if version.recorded_at < since_ms:
            continue
        if version.version_id not in first or appended < first[version.version_id][0]:
            first[version.version_id] = (appended, version)
    if not first:
        return Staleness()
    delays = sorted(((appended - version.recorded_at, version) for appended, version in first.values()),
                    key=lambda delay: delay[0])
    values = [delay for delay, _ in delays]
    worst_delay, worst = delays[-1]
    cut = statistics.quantiles(values, n=100) if len(values) > 1 else values * 99
    return Staleness(len(values), worst_delay, statistics.median(values), cut[98],
                     f"{worst.entity_type}/{worst.entity_id} {worst.label} caused by "
                     f"{worst.caused_by.topic}[{worst.caused_by.partition}]@{worst.caused_by.offset}")
