"""Bad input loses nothing and stops nothing: every kind of malformed record (``tests.processors.malformed``)
goes to the dead-letter topic with a reason of its kind, and the good events around it are labelled
as if the malformed ones had never been written.

The records are produced straight with confluent-kafka, past the SDK's checks, as a buggy or
hostile producer would. The reference is a re-fold of the good records alone, at their very
positions in the log (same partitions, offsets and broker times), so the versions must match
field for field.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter, defaultdict
from random import Random
from uuid import UUID

import pytest
from confluent_kafka import Producer

from labelstore.events.publisher import producer_config
from labelstore.events.reader import count_records, read_raw
from labelstore.labels import LabelVersion
from labelstore.materializers.materializer import Materializer
from labelstore.materializers.rows import RowMaker
from labelstore.processors.core import DEAD_LETTER_CONTENT_BYTES, DeadLetter, EntityProcessor, RawMessage
from labelstore.processors.dead_letters import (
    ERROR_REASON, ERROR_TYPE, SOURCE_OFFSET, SOURCE_PARTITION, SOURCE_TOPIC, dead_letter_headers)
from labelstore.settings import ProcessorSettings, Settings, WarehouseSettings
from labelstore.warehouse import Warehouse
from tests.fraud_example import EXAMPLE, example_serializer, generate
from tests.processors.malformed import EXPECTED, KINDS, Malformed, MalformedRecords
from tests.processors.worker_process import WorkerProcess, label_versions, wait_for, with_processor

MAX_EVENT_BYTES = ProcessorSettings().max_event_bytes
Position = tuple[str, int, int]  # topic, partition, offset


def malformed_records(count: int, seed: int = 11) -> list[Malformed]:
    events = list(itertools.islice(generate(200, 50, seed=seed), 1_000))
    return list(MalformedRecords(EXAMPLE.codec, max_event_bytes=MAX_EVENT_BYTES, seed=seed).evenly(count, events))


def test_every_kind_of_malformed_record_is_refused_with_its_kind_by_the_processor_and_the_archive():
    processors = {e: EntityProcessor(d, []) for e, d in EXAMPLE.declarations.items()}
    rows = RowMaker({e: f"{e}.events" for e in EXAMPLE.declarations}, EXAMPLE.declarations, codec=EXAMPLE.codec)
    now = int(time.time() * 1000)
    refused: dict[str, Counter] = defaultdict(Counter)
    for offset, bad in enumerate(malformed_records(20 * len(KINDS))):
        message = RawMessage(f"{bad.entity_type}.events", 0, offset, now, bad.key, bad.value)
        result = processors[bad.entity_type].process([message], {}.get)
        refused[bad.kind].update(dead.error_type for dead in result.dead_letters)
        assert not result.records and not result.versions, bad.kind
        assert rows.event(message.topic, 0, offset, now, bad.key, bad.value) is None, bad.kind
    for kind in KINDS:
        assert sum(refused[kind].values()) == 20 and set(refused[kind]) <= EXPECTED[kind], (kind, refused[kind])


def test_event_time_may_be_up_to_a_day_after_the_broker_recorded_it_not_more():
    processor = EntityProcessor(EXAMPLE.declarations["order"], [])
    event = next(e for e in generate(3, 0, seed=2) if e.entity_type == "order")
    recorded_at = int(event.event_time.timestamp() * 1000)
    ahead_ms = round(ProcessorSettings().event_time_max_ahead_s * 1000)
    value = example_serializer().encode(event)
    results = [processor.process([RawMessage("orders.events", 0, 0, at, event.entity_id.encode(), value)], {}.get)
               for at in (recorded_at - ahead_ms, recorded_at - ahead_ms - 1, -1)]
    assert [len(r.records) for r in results] == [1, 0, 1]  # -1: a topic without broker times sets no bound
    assert results[1].dead_letters[0].error_type == "event-time-out-of-range"
    assert "event_time_max_ahead_s" in results[1].dead_letters[0].reason


def test_a_dead_letter_too_large_to_send_keeps_only_where_the_record_is():
    huge = RawMessage("orders.events", 3, 42, 0, b"k" * 600_000, b"v" * 600_000, (("trace", b"t" * 10),))
    dead = DeadLetter.of(huge, "key-mismatch", "key " + "k" * 50_000)
    assert (dead.message.key, dead.message.value, dead.message.headers) == (None, None, ())
    headers = dict(dead_letter_headers(dead))
    assert (headers[SOURCE_TOPIC], headers[SOURCE_PARTITION], headers[SOURCE_OFFSET]) == (b"orders.events", b"3", b"42")
    assert sum(len(name) + len(value) for name, value in headers.items()) < 10_000
    assert headers[ERROR_REASON].endswith(b"(clipped)")
    assert "1,200,015 bytes of key, value and headers" in DeadLetter.of(huge, "too-large", "why").reason
    small = RawMessage("orders.events", 0, 1, 0, b"k", b"v" * 1_000)
    assert DeadLetter.of(small, "key-mismatch", "why").message == small
    assert DEAD_LETTER_CONTENT_BYTES < 1_000_000  # librdkafka's default message.max.bytes


def publish_mixed(settings: Settings, good: int, bad: int, seed: int) -> tuple[set[Position], dict[Position, str]]:
    """``good`` demo events with ``bad`` malformed records at random places among them; the
    positions of the good records and the kind of each bad one."""
    rng = Random(seed)
    events = list(itertools.islice(generate(good // 3, good // 12, seed=seed), good))
    malformed = list(MalformedRecords(EXAMPLE.codec, max_event_bytes=MAX_EVENT_BYTES, seed=seed).evenly(bad, events))
    bad_at = dict(zip(sorted(rng.sample(range(len(events) + bad), bad)), malformed, strict=True))
    good_events = iter(events)
    serializer = example_serializer()
    # Past librdkafka's 1,000,000 bytes: the broker takes an oversize record compressed.
    producer = Producer(producer_config(settings, **{"message.max.bytes": 8 * MAX_EVENT_BYTES}))
    good_positions: set[Position] = set()
    bad_positions: dict[Position, str] = {}

    def delivered(kind: str | None):
        def record(error, message) -> None:
            assert error is None, error
            position = (message.topic(), message.partition(), message.offset())
            if kind is None:
                good_positions.add(position)
            else:
                bad_positions[position] = kind
        return record

    for index in range(len(events) + bad):
        if index in bad_at:
            item = bad_at[index]
            entity_type, key, value, kind = item.entity_type, item.key, item.value, item.kind
        else:
            event = next(good_events)
            entity_type, key, value, kind = event.entity_type, event.entity_id.encode(), serializer.encode(event), None
        while True:
            try:
                producer.produce(settings.topics.events_topic(entity_type), key=key, value=value,
                                 on_delivery=delivered(kind))
                break
            except BufferError:
                producer.poll(0.1)
    assert producer.flush(60) == 0
    return good_positions, bad_positions


def refold_of(settings: Settings, keep: set[Position]) -> dict[UUID, LabelVersion]:
    """What an uninterrupted processor emits for the records at ``keep`` alone."""
    rules = settings.repository.initial_rules()
    versions: dict[UUID, LabelVersion] = {}
    for entity_type, declaration in settings.repository.declarations.items():
        processor = EntityProcessor(declaration, [r for r in rules if r.entity_type == entity_type])
        topic = settings.topics.events_topic(entity_type)
        by_partition = defaultdict(list)
        for key, value, partition, offset, timestamp, headers in read_raw(settings, topic):
            if (topic, partition, offset) in keep:
                by_partition[partition].append(RawMessage(topic, partition, offset, timestamp, key, value,
                                                          tuple(headers)))
        store: dict = {}
        for messages in by_partition.values():
            for start in range(0, len(messages), 1_000):
                result = processor.process(messages[start:start + 1_000], store.get)
                assert not result.dead_letters
                store.update(result.records)
                versions.update((v.version_id, v) for v in result.versions)
    return versions


def dead_letters(settings: Settings) -> dict[Position, tuple[str, str]]:
    found = {}
    for *_, headers in read_raw(settings, settings.topics.dead_letter_topic):
        header = {name: value.decode() for name, value in headers}
        position = (header[SOURCE_TOPIC], int(header[SOURCE_PARTITION]), int(header[SOURCE_OFFSET]))
        assert position not in found, f"{position} dead-lettered twice"
        found[position] = (header[ERROR_TYPE], header[ERROR_REASON])
    return found


@pytest.mark.fault
@pytest.mark.timeout(420)
def test_malformed_records_among_good_ones_all_reach_the_dead_letter_topic_and_lose_no_good_event(
        settings, tmp_path):
    good, bad = publish_mixed(settings, 4_000, 30 * len(KINDS), seed=17)
    expected = refold_of(settings, good)
    worker = WorkerProcess(with_processor(settings, tmp_path / "data"), tmp_path / "worker.log").start()
    try:
        versions_topic, dlq = settings.topics.label_versions_topic, settings.topics.dead_letter_topic
        wait_for(lambda: count_records(settings, dlq) >= len(bad) and
                 count_records(settings, versions_topic) >= len(expected), timeout=300, worker=worker, interval=1)
        emitted = wait_for(lambda: (v := label_versions(settings)) and {x.version_id for x in v} >= set(expected) and v,
                           timeout=60, worker=worker)
        found = dead_letters(settings)
        worker.assert_alive()
    finally:
        worker.stop()

    assert set(found) == set(bad)  # every bad record, and no good one
    wrong = {position: (bad[position], found[position]) for position in bad
             if found[position][0] not in EXPECTED[bad[position]] or not found[position][1]}
    assert not wrong
    unique = {v.version_id: v for v in emitted}
    assert set(unique) == set(expected) and all(unique[k] == expected[k] for k in expected)
    log = worker.log_path.read_text()
    assert "events stopped" not in log, log[-3000:]  # what the agent logs when it fails

    warehouse = settings.model_copy(update={"warehouse": WarehouseSettings(path=tmp_path / "warehouse")})
    stats = Materializer(warehouse).run(until_caught_up=True)
    assert stats.skipped == len(bad)  # the archive leaves out what the processor dead-lettered, and says how many
    archived = Warehouse(warehouse.warehouse.path).connect().execute(
        'SELECT topic, "partition", "offset" FROM events').fetchall()
    assert sorted(archived) == sorted(good)
    kinds = Counter(bad.values())
    print(f"\n{len(good)} good events, {len(bad)} malformed ({dict(kinds)}): all dead-lettered with their kind, "
          f"{len(expected)} label versions as the re-fold of the good events alone, {len(archived)} archived")
