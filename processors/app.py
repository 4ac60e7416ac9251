"""The Faust app: thin agents that feed micro-batches of raw event bytes to ``EntityProcessor``.

One agent and one changelogged table per entity type. The agent's topic carries raw bytes and
reaches it through an intake (``processors.transport``), not through Faust's stream machinery;
each batch is decoded, folded and evaluated at once. Outputs go
out before the state is stored, so the table never runs ahead of the label versions in Kafka (see
``processors.core``): under at-least-once they are acknowledged first (``processors.outputs``),
under exactly-once they commit in the batch's transactions first (``processors.transactions``).
Nothing happens at import time: ``create_app(settings)`` builds everything.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import faust

from labelstore.connection import bootstrap_servers
from labelstore.declarations import EntityDeclaration
from labelstore.intake import Limits
from labelstore.rules.model import LabelRule
from labelstore.repository import RepositoryWatch
from labelstore.settings import ProcessorSettings, Settings
from labelstore.collector import collect_less
from labelstore.processors.batches import MessageBatches
from labelstore.processors.core import BatchResult, EntityProcessor, RawMessage, decode_record
from labelstore.processors.health import FreezeGuard
from labelstore.processors.metrics import ScrapedGauges, WorkerMetrics, store_size
from labelstore.processors.outputs import RAW, DirectOutputs
from labelstore.processors.rulebook import RuleBook
from labelstore.processors.tables import EntityStateTable
from labelstore.processors.transactions import TransactionalApp, TransactionalOutputs
from labelstore.processors.transport import App as TransportApp, Intake
from labelstore.processors.web import register_label_pages

log = logging.getLogger("labelstore.processor")
RAW_TABLE = {"key_type": bytes, "value_type": bytes}  # a bytes-typed table stores keys and values as they are


def create_app(
    settings: Settings,
    *,
    declarations: Mapping[str, EntityDeclaration] | None = None,
    rules: Sequence[LabelRule] | None = None,
    on_crash: Callable[[BaseException], None] | None = None,
) -> faust.App:
    """The processor app. ``on_crash`` is called when an agent fails (after logging): Faust would
    otherwise leave the worker running with that agent stopped."""
    from_repository = declarations is None
    declarations = declarations or settings.repository.declarations
    rules = settings.repository.initial_rules() if rules is None else rules
    app = _faust_app(settings)
    counters: Counter[str] = Counter()
    metrics = WorkerMetrics() if settings.processor.metrics else None
    tables = {}
    rulebook = RuleBook(rules, settings)  # activations on the rules topic, shared by the agents
    for entity_type, declaration in declarations.items():
        entity_rules = [rule for rule in rules if rule.entity_type == entity_type]
        watch = RepositoryWatch(settings.repository) if from_repository else None
        processor = EntityProcessor(declaration, entity_rules, validate_payloads=settings.processor.validate_payloads,
                                    rulebook=rulebook, codec=settings.repository.codec,
                                    watch=watch, limits=Limits.of(settings.processor))
        tables[entity_type] = app.Table(
            f"{entity_type}-state", partitions=settings.kafka.partitions, **RAW_TABLE
        )
        source = app.topic(settings.topics.events_topic(entity_type), partitions=settings.kafka.partitions, **RAW)
        intake = app.intake(source.get_topic_name())
        app.agent(source, name=f"label-{entity_type}")(
            _agent(processor, tables[entity_type], _outputs(app, settings), rulebook, counters, metrics,
                   settings.processor, intake, on_crash)
        )
    register_label_pages(app, tables)
    if metrics is not None:
        metrics.watch(ScrapedGauges(
            lag=lambda: metrics.lag(),
            rules_in_force=lambda: rulebook.in_force(int(time.time() * 1000)),
            activations=lambda: rulebook.revision,
            store_sizes=lambda: {entity_type: store_size(table.data) for entity_type, table in tables.items()}))

    @app.timer(interval=10.0)
    async def report_counts() -> None:
        if counters:
            log.info("processed %s", dict(counters))

    app.labelstore_counters = counters  # type: ignore[attr-defined]  # read by tests and the CLI
    app.labelstore_metrics = metrics  # type: ignore[attr-defined]  # served on /metrics (processors.web)
    return app


def _faust_app(settings: Settings) -> faust.App:
    conf = settings.processor
    scheme = "kafka" if conf.transport == "aiokafka" else "confluent"
    brokers = ";".join(f"{scheme}://{server}" for server in bootstrap_servers(settings).split(","))
    datadir = conf.data_dir / f"worker-{conf.web_port}"
    datadir.mkdir(parents=True, exist_ok=True)
    exactly_once = conf.processing_guarantee == "exactly_once"
    return (TransactionalApp if exactly_once else TransportApp)(
        settings.topics.prefix + conf.app_id,
        broker=brokers,
        store=conf.store,
        datadir=str(datadir),
        autodiscover=False,
        processing_guarantee=conf.processing_guarantee,
        topic_partitions=settings.kafka.partitions,
        topic_replication_factor=settings.kafka.replication_factor,
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=conf.session_timeout_s,
        broker_heartbeat_interval=min(3.0, conf.session_timeout_s / 3),
        producer_linger=0.005,
        producer_max_batch_size=1_048_576,
        producer_acks=-1,
        web_enabled=True,
        web_host=conf.web_host,
        web_port=conf.web_port,
        web_in_thread=False,
        Table=EntityStateTable,
        # Under exactly-once the changelog's end is its stable offset, which trails a commit the
        # store already holds until the broker has written the commit markers: no inconsistency.
        recovery_consistency_check=not exactly_once,
    )


def _outputs(app: faust.App, settings: Settings) -> DirectOutputs | TransactionalOutputs:
    if settings.processor.processing_guarantee == "exactly_once":
        return TransactionalOutputs(app, settings)
    return DirectOutputs(settings)


def _agent(processor: EntityProcessor, table: Any, outputs: DirectOutputs | TransactionalOutputs,
           rulebook: RuleBook | None,
           counters: Counter[str], metrics: WorkerMetrics | None, conf: ProcessorSettings, intake: Intake,
           on_crash: Callable[[BaseException], None] | None):
    entity_type = processor.entity_type

    async def process(stream: faust.StreamT) -> None:
        # The stream subscribes the agent to its topic; the messages come through the intake.
        try:
            if isinstance(outputs, TransactionalOutputs):
                await _process_transactions(stream.app)
            else:
                await _process_batches(stream.app)
        except Exception as exc:
            log.exception("processing %s events stopped", entity_type)
            if on_crash is not None:
                on_crash(exc)
            raise

    async def _process_batches(app: faust.App) -> None:
        # A batch's events are acknowledged (their offsets may be committed) once its changelog
        # records are confirmed: together with the next batch's outputs, or when no event came
        # for a while.
        unconfirmed: list = []

        async def confirm() -> None:
            await outputs.settle()
            batches.ack(unconfirmed)
            unconfirmed.clear()

        async def may_write(messages: Sequence[Any]) -> bool:
            # A worker that was not running past its session timeout writes nothing of what it
            # held until its group moved on (processors.health.FreezeGuard).
            if app.freeze_guard.may_write(messages[0].generation_id):
                return True
            batches.give_back(messages)
            await asyncio.sleep(FreezeGuard.TICK_S)
            return False

        batches = MessageBatches(app, intake, conf.batch_size, conf.batch_within_s, on_idle=confirm)
        app.freeze_guard.start()
        while True:
            messages = await batches.take()
            if not messages:
                continue
            started = time.perf_counter()
            batch = [_raw(message) for message in messages]
            result = await _evaluate(batch)
            # 1. versions and dead letters become durable (and the previous batch's state),
            # 2. then the state is stored.
            if not await may_write(messages):
                continue
            await outputs.send_and_wait(result)
            acknowledged = time.time()
            batches.ack(unconfirmed)
            if not await may_write(messages):  # stopped while the outputs went out
                continue
            await outputs.store_states(table, result)
            unconfirmed[:] = messages
            _count(batch, result, started, acknowledged)
            _spare_the_collector()

    async def _process_transactions(app: faust.App) -> None:
        # A batch's events are acknowledged once its transactions committed their offsets: Faust
        # then waits for the batch in progress before it gives a partition away.
        batches = MessageBatches(app, intake, conf.batch_size, conf.batch_within_s)
        while True:
            messages = await batches.take()
            if not messages:
                continue
            started = time.perf_counter()
            batch = [_raw(message) for message in messages]
            result = await _evaluate(batch)
            await outputs.commit(batch, result, table)
            batches.ack(messages)
            _count(batch, result, started, time.time())
            _spare_the_collector()

    async def _evaluate(batch: Sequence[RawMessage]) -> BatchResult:
        store = table.data  # the store itself: the table's own lookup runs Faust's sensors per key

        def stored(key: bytes) -> dict[str, Any] | None:
            return decode_record(store.get(key))

        if rulebook is None:
            return processor.process(batch, stored)
        # Reading the rules topic to the batch's newest event (a round trip to the brokers) runs
        # on a thread while the batch is evaluated with the activations known so far; should one
        # arrive meanwhile, the batch is evaluated again. Nothing is stored before the outputs.
        revision = rulebook.revision
        known = rulebook.known_through(max(message.timestamp_ms for message in batch))
        result = processor.process(batch, stored, wait_for_rules=False)
        await known
        if rulebook.revision != revision:
            result = processor.process(batch, stored)
        return result

    def _count(batch: Sequence[RawMessage], result: BatchResult, started: float, acknowledged: float) -> None:
        if metrics is not None:
            metrics.batch_done(entity_type, batch, result, started, acknowledged)
        counters[f"{entity_type}.events"] += len(batch)
        counters[f"{entity_type}.versions"] += len(result.versions)
        counters[f"{entity_type}.dead_letters"] += len(result.dead_letters)
        counters[f"{entity_type}.replays_skipped"] += result.skipped_replays
        for dead in result.dead_letters:
            log.warning("dead letter %s/%s@%s: %s", dead.message.topic, dead.message.partition,
                        dead.message.offset, dead.reason.splitlines()[0])

    process.__name__ = f"label_{entity_type}"
    return process


@functools.cache
def _spare_the_collector() -> None:
    """Once the worker runs, exempt what start-up built from Python's full collections: they went
    over every object (Faust, DuckDB, the rules) and paused the event loop 55-120 ms, several
    times a minute at 2k events/s. Objects made later are collected as usual, the youngest
    generation less often (``labelstore.collector``)."""
    gc.freeze()
    collect_less()


def _raw(message: Any) -> RawMessage:
    # Faust gives the broker timestamp in seconds (float); the log-append time is exact in ms.
    return RawMessage(message.topic, message.partition, message.offset, round(message.timestamp * 1000),
                      message.key, message.value, tuple(message.headers or ()))
