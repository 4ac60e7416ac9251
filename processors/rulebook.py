"""Which rule versions apply to an event: the built-in rules, changed by activations on the rules topic.

An activation applies to events logged at or after its own log-append time. Before the processor
evaluates events logged up to time T, ``ensure_known_through(T)`` reads the rules topic to its end
(as of a moment after T), so no activation logged before T can be missed, whatever the worker, and
a replay after a crash evaluates every event with the same versions as the first time.
Assumes the brokers' and the workers' clocks agree to well under a batch interval.

The reading happens on a thread of its own: an offsets request is a network round trip (3-13 ms
measured on a local broker), and on the event loop it held up every batch of every agent. The
agent starts ``known_through(T)``, evaluates the batch meanwhile, then awaits it.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Sequence

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from pydantic import ValidationError

from labelstore.catalog.activation import ActivationRecord
from labelstore.connection import bootstrap_servers
from labelstore.rules.model import LabelRule
from labelstore.settings import Settings

log = logging.getLogger("labelstore.processor.rules")
WATERMARK_TIMEOUT_S = 120.0


class RuleBook:
    def __init__(self, defaults: Sequence[LabelRule], settings: Settings | None = None) -> None:
        self._defaults: dict[str, list[LabelRule]] = defaultdict(list)
        for rule in defaults:
            self._defaults[rule.entity_type].append(rule)
        # label -> [(effective ms, rule or None)], in log order
        self._changes: dict[str, list[tuple[int, LabelRule | None]]] = {}
        self._entity_of: dict[str, str] = {rule.name: rule.entity_type for rule in defaults}
        self.known_through_ms = -1
        self.revision = 0  # counts the activations read
        self._consumer = None
        # Guards the changes and the known/wanted times; the reader thread waits on it for demand.
        self._lock = threading.Condition()
        self._wanted_through_ms = -1
        self._reader: threading.Thread | None = None
        self._failure: BaseException | None = None
        self._waiters: list[tuple[int, asyncio.AbstractEventLoop, asyncio.Future]] = []
        if settings is not None:
            self._topic = settings.topics.rules_topic
            self._config = {"bootstrap.servers": bootstrap_servers(settings), "group.id": "labelstore-rules",
                            "enable.auto.commit": False, "enable.partition.eof": False}
            # Assigned only while reading new activations: an offsets request waits behind an open
            # fetch on the same connection (up to fetch.wait.max.ms), so idle, nothing is fetched.
            self._consumer = Consumer(self._config)
            self._position = 0

    def changes(self, entity_type: str) -> bool:
        with self._lock:
            return any(self._entity_of.get(label) == entity_type for label in self._changes)

    def rules_at(self, entity_type: str, recorded_at_ms: int) -> tuple[LabelRule, ...]:
        """The rule of each of the entity type's labels in force for an event logged at that time."""
        rules = {rule.name: rule for rule in self._defaults.get(entity_type, ())}
        with self._lock:
            changes = {label: list(history) for label, history in self._changes.items()
                       if self._entity_of.get(label) == entity_type}
        for label, history in changes.items():
            index = bisect.bisect_right(history, recorded_at_ms, key=lambda change: change[0])
            if index:
                rule = history[index - 1][1]
                if rule is None:
                    rules.pop(label, None)
                else:
                    rules[label] = rule
        return tuple(rules[name] for name in sorted(rules))

    def in_force(self, recorded_at_ms: int) -> list[tuple[str, str, int]]:
        """(entity type, label, rule version) of every label known, at that time; 0 when switched off."""
        with self._lock:
            labels = dict(self._entity_of)
        in_force = []
        for entity_type in sorted(set(labels.values())):
            versions = {rule.name: rule.version for rule in self.rules_at(entity_type, recorded_at_ms)}
            in_force += [(entity_type, label, versions.get(label, 0))
                         for label in sorted(label for label, owner in labels.items() if owner == entity_type)]
        return in_force

    def ensure_known_through(self, recorded_at_ms: int) -> None:
        """Return once every activation logged before ``recorded_at_ms`` has been read."""
        if self._consumer is None or recorded_at_ms <= self.known_through_ms:
            return
        with self._lock:
            self._want(recorded_at_ms)
            while self.known_through_ms < recorded_at_ms and self._failure is None:
                self._lock.wait()
            if self._failure is not None:
                raise self._failure

    def known_through(self, recorded_at_ms: int) -> asyncio.Future:
        """``ensure_known_through`` for the event loop: a future, resolved by the reader thread
        (the read starts now, so the caller can work meanwhile)."""
        loop = asyncio.get_running_loop()
        known = loop.create_future()
        if self._consumer is None:
            known.set_result(None)
            return known
        with self._lock:
            # Checked under the lock: a read finishing between a check and the wait would never
            # wake a waiter added after it.
            if recorded_at_ms <= self.known_through_ms or self._failure is not None:
                _settle(known, self._failure)
            else:
                self._waiters.append((recorded_at_ms, loop, known))
                self._want(recorded_at_ms)
        return known

    def _want(self, recorded_at_ms: int) -> None:
        """Under the lock: ask the reader to read through that time."""
        if self._reader is None:
            self._reader = threading.Thread(target=self._read_on_demand, name="rules-reader", daemon=True)
            self._reader.start()
        self._wanted_through_ms = max(self._wanted_through_ms, recorded_at_ms)
        self._lock.notify_all()

    def _read_on_demand(self) -> None:
        try:
            while True:
                with self._lock:
                    while self._wanted_through_ms <= self.known_through_ms:
                        self._lock.wait()
                    if self._consumer is None:
                        return
                asked_at = int(time.time() * 1000)
                self._read_to_end()
                with self._lock:
                    self.known_through_ms = asked_at
                    self._wake_waiters()
        except BaseException as exc:  # waiting agents get it, rather than waiting forever
            with self._lock:
                self._failure = exc
                self._wake_waiters()

    def _wake_waiters(self) -> None:
        """Under the lock: wake the threads waiting, and resolve the event-loop futures now due
        (straight from this thread: a hop through an executor thread cost the agent milliseconds
        per batch while it held the GIL)."""
        self._lock.notify_all()
        waiting, self._waiters = self._waiters, []
        for through_ms, loop, known in waiting:
            if through_ms > self.known_through_ms and self._failure is None:
                self._waiters.append((through_ms, loop, known))
                continue
            try:
                loop.call_soon_threadsafe(_settle, known, self._failure)
            except RuntimeError:  # the loop is closed: the worker is stopping, nobody waits
                pass

    def _read_to_end(self) -> None:
        _, end = self._watermarks()
        if self._position < end:
            self._consumer.assign([TopicPartition(self._topic, 0, self._position)])
            try:
                while self._position < end:
                    for message in self._consumer.consume(1_000, timeout=1.0):
                        if message.error():
                            raise KafkaException(message.error())
                        self._position = message.offset() + 1
                        self._apply(message.value(), message.timestamp()[1], message.offset())
            finally:
                self._consumer.unassign()

    def close(self) -> None:
        with self._lock:
            consumer, self._consumer = self._consumer, None
            self._wanted_through_ms = 2**63  # wakes the reader, which then ends
            self._lock.notify_all()
        if self._reader is not None:
            self._reader.join(10)
        if consumer is not None:
            consumer.close()

    def _apply(self, value: bytes | None, effective_ms: int, offset: int) -> None:
        try:
            record = ActivationRecord.model_validate_json(value or b"")
        except ValidationError as exc:
            log.error("ignoring rules-topic record at offset %d: %s", offset, exc)
            return
        with self._lock:
            self._entity_of[record.label] = record.entity_type
            self._changes.setdefault(record.label, []).append((effective_ms, record.rule))
            self.revision += 1
        what = record.rule.key if record.rule else "off"
        log.info("rule activation: %s %s from %d (by %s)", record.label, what, effective_ms, record.activated_by)

    def _watermarks(self) -> tuple[int, int]:
        started = time.monotonic()
        while True:
            try:
                return self._consumer.get_watermark_offsets(TopicPartition(self._topic, 0), timeout=5)
            except KafkaException as exc:
                waited = time.monotonic() - started
                if exc.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART and waited > 5:
                    return 0, 0  # no rules topic (created by `labelstore topics create`): no activations
                if waited > WATERMARK_TIMEOUT_S:
                    raise
                # The partition's leader may have moved (a broker stopped): an idle consumer keeps
                # asking the old one, so start over with fresh metadata.
                log.warning("reading the rules topic: %s; retrying", exc.args[0].str())
                self._consumer.close()
                self._consumer = Consumer(self._config)
                time.sleep(0.5)


def _settle(known: asyncio.Future, failure: BaseException | None) -> None:
    if known.done():  # the waiting agent was cancelled
        return
    if failure is None:
        known.set_result(None)
    else:
        known.set_exception(failure)
