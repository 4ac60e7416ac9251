"""The label processor's logic written with Quix Streams: the peer in bench/processor_throughput.py.

Runs in its own virtual environment (quixstreams pins an older confluent-kafka), started by the
benchmark with the repository on PYTHONPATH; configured by environment variables:
BOOTSTRAP_SERVERS, EVENTS_TOPIC, VERSIONS_TOPIC, LATEST_TOPIC, STATE_DIR, and optionally
COMMIT_INTERVAL (seconds between checkpoints; Quix's default, 5).

The same logic, written the way Quix Streams is meant to be used, and fair to it:
  - per message (Quix's model), in a stateful ``apply``: admission check and Avro decoding
    (``labelstore.intake.admit``), then the shared fold (``EntityFold``) on the entity's state,
    kept in Quix's changelogged RocksDB state; the previous and the new state travel on;
  - per batch, in a ``BatchingSink`` (Quix hands it each partition's messages at checkpoint): the
    shared ``RuleEvaluator`` evaluates the rules on every previous and new state in one DuckDB
    query, ``label_changes`` emits a version where a label changed, and the versions go to
    labels.versions (key entity_id) and labels.latest (key entity + label), both to the causing
    event's partition, as the processor does;
  - the checkpoint calls the sink's ``flush`` once for all partitions: it writes every
    partition's batch, then waits once for the broker's acknowledgements, so Quix commits the
    input offsets only after the versions are durable (at least once, like the processor). The
    checkpoint interval is Quix's default (the Faust processor also runs with Faust's default);
    it bounds how long a version waits, and shorter intervals cost throughput (1 s: about a
    fifth less in trial runs).
Evaluating the rules on the previous state stands in for the processor's stored labels: with
fixed rules, the current label is the rule's value on the previous state. It doubles the rows of
the DuckDB query: about a microsecond more per event, small beside Quix's per-message path.
Nothing in this design runs a query per message.
"""

from __future__ import annotations

import os
from typing import Any

from confluent_kafka import Producer
from quixstreams import Application
from quixstreams.sinks import BatchingSink, SinkBatch

import example  # noqa: F401  (the fraud example repository)
from labelstore.events.publisher import producer_config
from labelstore.declarations import load_declarations
from labelstore.fold import EntityFold, to_epoch_ms
from labelstore.intake import Rejection, admit, checks_of
from labelstore.labels import Cause, label_changes
from labelstore.rules.evaluation import RuleEvaluator
from labelstore.rules.model import load_rules
from labelstore.settings import KafkaSettings, Settings
from labelstore.processors.core import RULE_INPUTS_REMEMBERED
from labelstore.schemas.codec import AvroCodec

ENTITY_TYPE = "order"


class LabelVersionSink(BatchingSink):
    def __init__(self, bootstrap: str, events_topic: str, versions_topic: str, latest_topic: str) -> None:
        super().__init__()
        declaration = load_declarations()[ENTITY_TYPE]
        self.rules = [rule for rule in load_rules() if rule.entity_type == ENTITY_TYPE]
        self.evaluator = RuleEvaluator(declaration, self.rules, cache_size=RULE_INPUTS_REMEMBERED)
        self.events_topic, self.versions_topic, self.latest_topic = events_topic, versions_topic, latest_topic
        # The bare loop's producer settings (idempotent, acks=all, lz4, linger 20 ms).
        settings = Settings(kafka=KafkaSettings(bootstrap_servers=bootstrap))
        self.producer = Producer(producer_config(settings, **{"linger.ms": 20}))

    def setup(self) -> None:
        pass

    def write(self, batch: SinkBatch) -> None:
        items = list(batch)
        with_previous = [i for i, item in enumerate(items) if item.value["previous"] is not None]
        rows = self.evaluator.evaluate([items[i].value["previous"] for i in with_previous]
                                       + [item.value["state"] for item in items])
        previous_values = dict(zip(with_previous, rows[: len(with_previous)], strict=True))
        new_values = rows[len(with_previous):]
        for index, (item, values) in enumerate(zip(items, new_values, strict=True)):
            before = previous_values.get(index, (None,) * len(self.rules))
            current = {rule.name: {"value": value} for rule, value in zip(self.rules, before, strict=True)}
            cause = Cause(event_id=item.value["event_id"], topic=self.events_topic, partition=batch.partition,
                          offset=item.offset)
            for version in label_changes(ENTITY_TYPE, item.value["entity_id"], self.rules, values, current,
                                         event_time=item.value["event_time"], recorded_at=item.timestamp, cause=cause):
                value = version.to_json()
                self._produce(self.versions_topic, version.entity_id.encode(), value, batch.partition)
                self._produce(self.latest_topic, version.latest_key, value, batch.partition)
        self.producer.poll(0)

    def flush(self) -> None:
        """Write every partition's batch, then wait for all of them at once (Quix commits after this)."""
        super().flush()
        if self.producer.flush(60) != 0:
            raise RuntimeError("label versions were not acknowledged in time")

    def _produce(self, topic: str, key: bytes, value: bytes, partition: int) -> None:
        while True:
            try:
                self.producer.produce(topic, key=key, value=value, partition=partition)
                return
            except BufferError:
                self.producer.poll(0.05)


def main() -> None:
    bootstrap, events_topic = os.environ["BOOTSTRAP_SERVERS"], os.environ["EVENTS_TOPIC"]
    app = Application(
        broker_address=bootstrap,
        consumer_group=f"quix-{events_topic}",
        auto_offset_reset="earliest",
        commit_interval=float(os.environ.get("COMMIT_INTERVAL", "5.0")),
        state_dir=os.environ["STATE_DIR"],
        loglevel="WARNING",
        consumer_extra_config={"queued.min.messages": 200_000, "fetch.queue.backoff.ms": 10,
                               "session.timeout.ms": 6_000},
    )
    topic = app.topic(events_topic, key_deserializer="bytes", value_deserializer="bytes")
    fold, codec = EntityFold(load_declarations()[ENTITY_TYPE]), AvroCodec()
    checks = checks_of(codec)

    def fold_event(value: bytes, key: bytes, timestamp: int, headers: Any, state) -> dict | None:
        # The processor's admission: payload checks, and event times bounded by the broker's time.
        decoded = admit(ENTITY_TYPE, key, value, codec, checks=checks, foldable=frozenset(fold.declaration.events),
                        recorded_at_ms=timestamp)
        if isinstance(decoded, Rejection):
            return None
        previous = state.get("state")
        new = fold.apply(previous, decoded.event_type, decoded.record)
        state.set("state", new)
        record = decoded.record
        return {"previous": previous, "state": new, "entity_id": record["entity_id"],
                "event_id": str(record["event_id"]), "event_time": to_epoch_ms(record["event_time"])}

    sdf = app.dataframe(topic).apply(fold_event, stateful=True, metadata=True).filter(lambda item: item is not None)
    sdf.sink(LabelVersionSink(bootstrap, events_topic, os.environ["VERSIONS_TOPIC"], os.environ["LATEST_TOPIC"]))
    app.run()


if __name__ == "__main__":
    main()
