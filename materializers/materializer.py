"""Kafka -> Parquet: archive every event and every label version, resuming from committed offsets.

The materializer assigns itself every partition of the event topics and of ``labels.versions``
(no consumer group: the warehouse's commit log, not Kafka, holds its position), buffers records,
and commits them as Parquet files with the offsets they cover. One materializer per warehouse.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from collections.abc import Callable
from dataclasses import dataclass

import duckdb
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from labelstore.events.admin import end_offsets
from labelstore.collector import collect_less
from labelstore.intake import Limits
from labelstore.connection import bootstrap_servers
from labelstore.errors import LabelstoreError
from labelstore.settings import Settings
from labelstore.repository import RepositoryWatch
from labelstore.warehouse import DATASETS, Warehouse
from labelstore.materializers.columns import EventColumns
from labelstore.materializers.commits import CommitLog
from labelstore.materializers.metrics import MaterializerMetrics
from labelstore.materializers.rows import Batch, RowMaker

log = logging.getLogger("labelstore.materializer")


@dataclass
class MaterializerStats:
    records: int = 0
    skipped: int = 0
    commits: int = 0


class Materializer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.warehouse = Warehouse.of(settings)
        self.stats = MaterializerStats()
        self._views_stale, self._views_refreshed_at = False, 0.0
        self.metrics = MaterializerMetrics()  # served by `labelstore materialize`
        topics = settings.topics
        declarations = settings.repository.declarations
        self.event_topics = [topics.events_topic(e) for e in declarations]
        self.versions_topic = topics.label_versions_topic
        self.commit_log = CommitLog(self.warehouse, {"events": self.event_topics,
                                                     "label_versions": [self.versions_topic]})
        self.rows = RowMaker({e: topics.events_topic(e) for e in declarations}, declarations,
                             validate_payloads=settings.processor.validate_payloads, codec=settings.repository.codec,
                             watch=RepositoryWatch(settings.repository), limits=Limits.of(settings.processor))
        self.columns = EventColumns(self.rows.admission)

    def run(self, *, until_caught_up: bool = False, should_stop: Callable[[], bool] = lambda: False,
            on_commit: Callable[[MaterializerStats], None] | None = None) -> MaterializerStats:
        collect_less()
        self.warehouse.root.mkdir(parents=True, exist_ok=True)
        self.commit_log.recover()
        self.refresh_duckdb()
        consumer = Consumer({
            "bootstrap.servers": bootstrap_servers(self.settings),
            "group.id": "labelstore-materializer",  # required by the client; never joined or committed
            "enable.auto.commit": False,
            "queued.min.messages": 200_000,
            "fetch.queue.backoff.ms": 10,
        })
        # Commits run on a thread of their own, one at a time and in order, while the next records
        # are fetched and decoded: writing Parquet and Iceberg's metadata was a third of the time.
        committer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="materializer-commit")
        in_flight: Future | None = None
        try:
            positions = self._assign(consumer)
            targets = end_offsets(self.settings, {t: list(ps) for t, ps in positions.items()}) if until_caught_up else None
            batch, started = Batch(), time.monotonic()
            interval = self.settings.warehouse.flush_interval_s
            while not should_stop():
                self._add_all(batch, consumer.consume(50_000, timeout=0.2), positions)
                caught_up = targets is not None and _reached(consumer, positions, targets)
                due = time.monotonic() - started >= interval
                full = batch.records >= self.settings.warehouse.flush_records
                if (batch.records and (caught_up or due or full)) or (due or caught_up) and self._idle_at_end(consumer, positions):
                    if in_flight is not None:
                        in_flight.result()  # the commit before this one, and its error if it failed
                    # An idle commit only records that the archive is complete up to now.
                    in_flight = committer.submit(self._commit, batch, {t: dict(ps) for t, ps in positions.items()},
                                                 _complete_through(consumer, positions), caught_up, on_commit)
                    self.metrics.behind(_lag(consumer, positions))
                    batch, started = Batch(), time.monotonic()
                elif due:
                    started = time.monotonic()
                if caught_up and not batch.records:
                    break
            if in_flight is not None:
                in_flight.result()
        finally:
            committer.shutdown(wait=True)
            consumer.close()
            if self._views_stale:
                self.refresh_duckdb()
        return self.stats

    def refresh_duckdb(self) -> None:
        """(Re)create the views of the DuckDB file over the tables' current snapshots.

        After a commit of records, at most once per ``flush_interval_s`` while catching up (planning
        the files took a tenth of a second per commit, 10% of archiving a backlog), and when caught
        up or stopping: the views are never more than one flush interval behind the tables."""
        self._views_stale, self._views_refreshed_at = False, time.monotonic()
        try:
            with duckdb.connect(str(self.warehouse.duckdb_path)) as connection:
                self.warehouse.create_views(connection)
        except duckdb.IOException as exc:  # someone holds the file open: the views stay as they were
            log.warning("could not update %s: %s", self.warehouse.duckdb_path, exc)

    def _idle_at_end(self, consumer: Consumer, positions: dict[str, dict[int, int]]) -> bool:
        return _complete_through(consumer, positions) is not None

    def _add_all(self, batch: Batch, messages: list, positions: dict[str, dict[int, int]]) -> None:
        """Label versions one by one; each topic's events of this fetch together (``EventColumns``)."""
        for message in messages:
            if message.error():
                raise KafkaException(message.error())
        topics = [message.topic() for message in messages]
        by_topic: dict[str, list] = {}
        if len(set(topics)) == 1:
            by_topic[topics[0]] = messages
        else:
            for topic, message in zip(topics, messages, strict=True):
                by_topic.setdefault(topic, []).append(message)
        for topic, fetched in by_topic.items():
            # One attribute at a time over the fetch: a comprehension per attribute costs less per
            # message than a loop that appends to five lists.
            partitions = [message.partition() for message in fetched]
            offsets = [message.offset() for message in fetched]
            values = [message.value() for message in fetched]
            if topic == self.versions_topic:
                for partition, offset, value in zip(partitions, offsets, values, strict=True):
                    self._add(batch, topic, partition, offset, self.rows.label_version(value))
            else:
                self._add_events(batch, topic, partitions, offsets, [message.timestamp()[1] for message in fetched],
                                 [message.key() for message in fetched], values)
            for partition, offset in zip(partitions, offsets, strict=True):
                positions[topic][partition] = offset + 1

    def _add_events(self, batch: Batch, topic: str, partitions: list[int], offsets: list[int],
                    timestamps: list[int], keys: list, values: list) -> None:
        archived, left = self.columns.rows(topic, self.rows.entity_types[topic], partitions, offsets, timestamps,
                                           keys, values)
        for made in archived:
            batch.add_table(made.folder, made.table, topic, made.covers)
        for index in left.tolist():
            self._add(batch, topic, partitions[index], offsets[index],
                      self.rows.event(topic, partitions[index], offsets[index], timestamps[index], keys[index],
                                      values[index]))

    def _add(self, batch: Batch, topic: str, partition: int, offset: int, made) -> None:
        if made is None:
            self.stats.skipped += 1  # bad input: the processor routes it to the dead-letter topic
            self.metrics.skipped.inc()
            return
        folder, row = made
        batch.add(folder, row, topic, partition, offset)

    def _commit(self, batch: Batch, positions: dict[str, dict[int, int]], complete_through_ms: int | None,
                caught_up: bool = False, on_commit: Callable[[MaterializerStats], None] | None = None) -> None:
        started = time.perf_counter()
        rows: dict[str, int] = dict.fromkeys(DATASETS, 0)
        for dataset, partition, table, covers in batch.tables():
            self.commit_log.stage(dataset, partition, table, covers)
            rows[dataset] += table.num_rows
        self.commit_log.commit(positions, complete_through_ms)
        self.stats.records += batch.records
        self.stats.commits += 1
        self.metrics.committed(rows, time.perf_counter() - started, complete_through_ms)
        log.info("commit %d: %d records", self.commit_log.sequence, batch.records)
        if batch.records:
            self._views_stale = True  # they name the files of the snapshots before this one
        if self._views_stale and (caught_up or time.monotonic() - self._views_refreshed_at >= self.settings.warehouse.flush_interval_s):
            self.refresh_duckdb()
        if on_commit is not None:
            on_commit(self.stats)

    def _assign(self, consumer: Consumer) -> dict[str, dict[int, int]]:
        stored = self.warehouse.offsets()
        positions: dict[str, dict[int, int]] = {}
        assignment = []
        for topic in [*self.event_topics, self.versions_topic]:
            metadata = consumer.list_topics(topic, timeout=30).topics.get(topic)
            if metadata is None or metadata.error is not None:
                raise LabelstoreError(f"topic {topic} does not exist: create it with `labelstore topics create`")
            positions[topic] = {}
            for partition in metadata.partitions:
                offset = stored.get(topic, {}).get(partition)
                positions[topic][partition] = offset if offset is not None else 0
                assignment.append(TopicPartition(topic, partition, OFFSET_BEGINNING if offset is None else offset))
        consumer.assign(assignment)
        return positions


def _complete_through(consumer: Consumer, positions: dict[str, dict[int, int]]) -> int | None:
    """Now (less a second for the fetch in flight) if every partition is at its last fetched end, else None."""
    seen_at = int(time.time() * 1000) - 1_000
    for topic, partitions in positions.items():
        for partition, position in partitions.items():
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), cached=True)
            if high < 0 or position < high:
                return None
    return seen_at


def _lag(consumer: Consumer, positions: dict[str, dict[int, int]]) -> dict[tuple[str, int], int]:
    lag = {}
    for topic, partitions in positions.items():
        for partition, position in partitions.items():
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), cached=True)
            if high >= 0:
                lag[topic, partition] = max(high - position, 0)
    return lag


def _reached(consumer: Consumer, positions: dict[str, dict[int, int]], targets: dict[str, dict[int, int]]) -> bool:
    behind = [TopicPartition(t, p) for t, parts in targets.items() for p, end in parts.items() if positions[t][p] < end]
    if not behind:
        return True
    # Transaction markers and compaction leave gaps: ask the consumer where it really is.
    for position in consumer.position(behind):
        if position.offset >= 0 and position.offset >= targets[position.topic][position.partition]:
            positions[position.topic][position.partition] = position.offset
        else:
            return False
    return True
