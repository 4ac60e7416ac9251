"""Exactly-once: each micro-batch's outputs, state and consumed offsets in one Kafka transaction
per input partition, with zombie fencing.

Faust's transactions do not fit an agent that reads micro-batches from an intake and acks them
itself: Faust joins outputs to whatever transaction of the output partition is open and commits it
with the consumed offsets at its commit interval, so a transaction could hold a batch's outputs
without that batch's offsets, and a restart processed the batch again (measured: 4,896 duplicate
label versions of 39,882 after one SIGKILL). Its recovery under ``read_committed`` also took the
changelog's end from the last fetch's stable offset, which a partition not fetched yet lacks (no
recovery at all).

Here the worker owns the transactions. Each partition of an event topic the worker is given has
a transactional producer of its own (``transactional.id`` = ``<group>-<events topic>-<partition>``).
Its start, when the partition is assigned and before Faust recovers the state or seeks to the
committed offsets, fences a previous owner that still believes it owns the partition: the
broker aborts that owner's open transaction or lets its commit finish first. For every batch,
for each of its partitions:

1. produce the partition's label versions, latest labels, dead letters and state changelog records;
2. add the partition's next offsets to the transaction (the group's committed offsets);
3. commit; on any failure abort and raise: the worker exits for a restart;
4. only then write the local store: it never holds state that is not committed.

Faust still runs in its exactly-once mode for what it does right: the consumer reads with
``isolation_level=read_committed`` (events, and the changelog during recovery), and its recovery
copes with the commit markers that end a transactional changelog. Its transaction manager is
replaced by ``PartitionTransactions``: it commits nothing itself (the offsets went with the
batches) and starts no producers of its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition
from faust.transport.consumer import TransactionManager
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from labelstore.errors import LabelstoreError
from labelstore.settings import Settings
from labelstore.processors import transport
from labelstore.processors.core import BatchResult, RawMessage, encode_record
from labelstore.processors.outputs import batch_outputs

log = logging.getLogger("labelstore.processor")
ABORT_TIMEOUT_S = 10.0
Record = tuple[str, bytes | None, bytes | None, list]  # topic, key, value, headers


class TransactionFailed(LabelstoreError):
    """A batch's transaction did not commit (aborted, or fenced by a newer owner of the partition):
    its outputs and offsets are not committed and the worker must restart to process it again."""


class PartitionTransactions(TransactionManager):
    """The transactional producers of the event-topic partitions this worker is given, in place of
    Faust's transaction manager (see the module's docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._producers: dict[TP, AIOKafkaProducer] = {}

    def producer_for(self, tp: TP) -> AIOKafkaProducer:
        try:
            return self._producers[tp]
        except KeyError:
            raise TransactionFailed(f"{tp.topic}[{tp.partition}] is not assigned to this worker (any more): "
                                    "its batch must not be committed here") from None

    async def on_rebalance(self, assigned: set[TP], revoked: set[TP], newly_assigned: set[TP]) -> None:
        # Faust calls this before it recovers the tables and seeks to the committed offsets: what
        # it then reads no longer changes under a previous owner of these partitions.
        intakes = self.app.intakes
        gone = [tp for tp in self._producers if tp not in assigned]
        await asyncio.gather(*(self._producers.pop(tp).stop() for tp in gone))
        started = [tp for tp in assigned if tp.topic in intakes and tp not in self._producers]
        producers = await asyncio.gather(*(self._start(tp) for tp in started))
        self._producers.update(zip(started, producers, strict=True))
        if started:
            log.info("transactional producers started (previous owners fenced) for %s",
                     ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(started)))

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        pass  # Faust waited for the batches in progress to be acked, i.e. committed

    async def commit(self, offsets: Mapping[TP, int], start_new_transaction: bool = True) -> bool:
        return True  # acked offsets were committed with their batch's transaction

    async def send(self, *args: Any, **kwargs: Any) -> Any:
        raise TransactionFailed("under exactly-once every output goes through a batch's transaction "
                                "(processors.transactions.TransactionalOutputs), not through a Faust topic")

    async def on_stop(self) -> None:
        producers, self._producers = list(self._producers.values()), {}
        await asyncio.gather(*(producer.stop() for producer in producers), return_exceptions=True)

    async def _start(self, tp: TP) -> AIOKafkaProducer:
        conf = self.app.conf
        producer = AIOKafkaProducer(
            bootstrap_servers=[f"{url.host}:{url.port or 9092}" for url in conf.broker],
            transactional_id=f"{conf.id}-{tp.topic}-{tp.partition}",
            acks="all",
            linger_ms=0,  # a batch is sent whole and committed at once: lingering only delays
            max_batch_size=1_048_576,
            request_timeout_ms=int(conf.broker_request_timeout * 1000),
        )
        await producer.start()
        # The first transaction waits for the producer id, whose request fences the previous owner.
        await producer.begin_transaction()
        return producer


class TransactionalOutputs:
    """``await commit(batch, result, table)``: the batch's outputs, state changelog records and
    next offsets committed in one transaction per input partition, then its state in the store.
    Raises ``TransactionFailed`` (after aborting) if any partition's transaction did not commit."""

    def __init__(self, app: Any, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def commit(self, batch: Sequence[RawMessage], result: BatchResult, table: Any) -> None:
        topic, changelog = batch[0].topic, table.changelog_topic.get_topic_name()  # an agent reads one topic
        states = {key: encode_record(record) for key, record in result.records.items()}
        records = self._by_partition(result, changelog, states)
        next_offsets: dict[int, int] = {}
        for message in batch:
            next_offsets[message.partition] = message.offset + 1  # a partition's messages come in order
        transactions = self.app.consumer.transactions
        written = await asyncio.gather(*(
            self._commit_partition(transactions.producer_for(TP(topic, partition)), records[partition],
                                   TopicPartition(topic, partition), offset, changelog)
            for partition, offset in next_offsets.items()))
        store = table.data
        for key, value in states.items():
            store[key] = value  # not table[key]: that would send the changelog record again, through Faust
        for partition, last in zip(next_offsets, written, strict=True):
            if last is not None:
                # The changelog partition has one writer, this partition's producer, so its commit
                # marker follows the transaction's last record: the store holds everything up to
                # the marker, and a recovery starts after it.
                store.set_persisted_offset(TP(changelog, partition), last + 1)

    def _by_partition(self, result: BatchResult, changelog: str,
                      states: Mapping[bytes, bytes]) -> dict[int, list[Record]]:
        records: dict[int, list[Record]] = defaultdict(list)
        for topic, key, value, partition, headers in batch_outputs(result, self.settings):
            records[partition].append((topic, key, value, headers))
        for key, value in states.items():
            records[result.partitions[key]].append((changelog, key, value, []))
        return records

    async def _commit_partition(self, producer: AIOKafkaProducer, records: Iterable[Record], source: TopicPartition,
                                next_offset: int, changelog: str) -> int | None:
        """Returns the offset of the transaction's last changelog record (None if it had none)."""
        try:
            sent = [(topic, await producer.send(topic, value=value, key=key, partition=source.partition,
                                                headers=headers or None))
                    for topic, key, value, headers in records]
            await producer.send_offsets_to_transaction({source: next_offset}, self.app.conf.id)
            delivered = [(topic, await future) for topic, future in sent]
            await producer.commit_transaction()
        except KafkaError as exc:
            await _abort(producer)
            raise TransactionFailed(f"the transaction of {source.topic}[{source.partition}] did not commit "
                                    f"({exc!r}); the worker restarts and processes its events again") from exc
        await producer.begin_transaction()
        return max((metadata.offset for topic, metadata in delivered if topic == changelog), default=None)


async def _abort(producer: AIOKafkaProducer) -> None:
    # Best effort: a fenced or broken producer cannot abort, and the broker aborts the transaction
    # anyway when the partition's next owner starts its producer (or at the transaction timeout).
    try:
        await asyncio.wait_for(producer.abort_transaction(), ABORT_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001
        log.warning("aborting a failed transaction failed too: %r", exc)


class _ReadCommittedConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    async def _highwaters(self, partitions: list[TP]) -> Mapping[TP, int]:
        # Faust answers from the stable offset of the last fetch, which a changelog partition not
        # fetched yet does not have: its recovery then ends at once, with no state. A
        # read_committed consumer's end offsets are the stable offsets, asked of the brokers.
        return await self._ensure_consumer().end_offsets(partitions)


class TransactionalConsumer(transport.Consumer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.transactions = PartitionTransactions(self.transport, consumer=self, producer=self.app.producer,
                                                  beacon=self.beacon, loop=self.loop)

    def _new_consumer_thread(self) -> _ReadCommittedConsumerThread:
        return _ReadCommittedConsumerThread(self, loop=self.loop, beacon=self.beacon)


class TransactionalTransport(transport.Transport):
    Consumer = TransactionalConsumer


class TransactionalApp(transport.App):
    """The processor's app under exactly-once (aiokafka transport only)."""

    def _new_transport(self) -> Any:
        if self.conf.broker_consumer[0].scheme != "kafka":
            raise LabelstoreError("exactly-once needs the aiokafka transport (LABELSTORE_PROCESSOR__TRANSPORT=aiokafka)")
        return TransactionalTransport(self.conf.broker_consumer, self)
