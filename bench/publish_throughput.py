"""Publishing throughput: the SDK against a bare confluent-kafka producer loop, same broker, same run.

    python bench/publish_throughput.py --events 200000 --repeat 3

Starts its own local broker (or uses --bootstrap), pre-generates the demo events (not timed) and
times, each on a fresh topic set, from the first produce call to the last acknowledgement:
  bare loop          pre-encoded bytes, produce + flush: the client's ceiling on this machine
  bare loop + fastavro  the same loop encoding each event with fastavro first (as a service would
                        by hand): the reference of the SDK's targets
  SDK publish_many   events.publisher.Publisher.publish_many (encode, key, produce, reports)
  SDK publish        one future per event, then flush
Every producer has the SDK's settings (idempotent, acks=all, murmur2, lz4, linger). Figures are the
best of --repeat runs; compare the ratios, not the absolute numbers, across machines.
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
from collections.abc import Callable
from io import BytesIO
from pathlib import Path
from time import perf_counter
from uuid import uuid4

from confluent_kafka import Producer
from fastavro import parse_schema, schemaless_writer
from rich.console import Console
from rich.table import Table

from labelstore.events.admin import ensure_topics
from example import EXAMPLE, generate
from labelstore.events.models import Event
from labelstore.events.publisher import Publisher, producer_config
from labelstore.schemas.codec import MAGIC
from labelstore.localkafka import LocalKafkaCluster
from labelstore.settings import KafkaSettings, LocalKafkaSettings, Settings, TopicSettings


def fresh_settings(bootstrap: str) -> Settings:
    settings = Settings(kafka=KafkaSettings(bootstrap_servers=bootstrap),
                        topics=TopicSettings(prefix=f"bench{uuid4().hex[:8]}."))
    ensure_topics(settings)
    return settings


def fastavro_encoder() -> Callable[[Event], bytes]:
    """What a service would write by hand: fastavro's writer on the event's record, behind the
    single-object header. Not labelstore's codec, so the reference does not move with it."""
    schemas = {name: (MAGIC + schema.fingerprint, parse_schema(dict(schema.schema)))
               for name, schema in EXAMPLE.schema_set.current.items()}

    def encode(event: Event) -> bytes:
        header, schema = schemas[event.event_type]
        buffer = BytesIO()
        buffer.write(header)
        schemaless_writer(buffer, schema, event.to_record())
        return buffer.getvalue()

    return encode


def bare_loop(settings: Settings, events: list[Event], encoded: list[bytes] | None) -> None:
    producer = Producer(producer_config(settings))
    encode = fastavro_encoder()
    topics = {entity: settings.topics.events_topic(entity) for entity in settings.repository.entity_types}
    for index, event in enumerate(events):
        value = encoded[index] if encoded is not None else encode(event)
        while True:
            try:
                producer.produce(topics[event.entity_type], value=value, key=event.entity_id.encode())
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    assert producer.flush(120) == 0


def sdk_publish_many(settings: Settings, events: list[Event]) -> None:
    with Publisher(settings) as publisher:
        assert len(publisher.publish_many(events)) == len(events)


def sdk_publish(settings: Settings, events: list[Event]) -> None:
    with Publisher(settings) as publisher:
        futures = [publisher.publish(event) for event in events]
    assert all(f.result().offset >= 0 for f in futures)


def best_rate(run: Callable[[Settings], None], bootstrap: str, count: int, repeat: int) -> float:
    rates = []
    for _ in range(repeat):
        settings = fresh_settings(bootstrap)
        started = perf_counter()
        run(settings)
        rates.append(count / (perf_counter() - started))
    return max(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--bootstrap", help="use this cluster instead of starting a local broker")
    args = parser.parse_args()

    events = list(itertools.islice(generate(args.events, args.events // 5, seed=5), args.events))
    encode = fastavro_encoder()
    encoded = [encode(event) for event in events]
    with tempfile.TemporaryDirectory() as data_dir:
        cluster = None
        if args.bootstrap is None:
            cluster = LocalKafkaCluster(LocalKafkaSettings(), nodes=1, data_dir=Path(data_dir))
            cluster.start()
        bootstrap = args.bootstrap or cluster.bootstrap_servers
        try:
            runs = {
                "bare loop (pre-encoded)": lambda s: bare_loop(s, events, encoded),
                "bare loop + fastavro encode": lambda s: bare_loop(s, events, None),
                "SDK publish_many": lambda s: sdk_publish_many(s, events),
                "SDK publish (futures)": lambda s: sdk_publish(s, events),
            }
            rates = {name: best_rate(run, bootstrap, len(events), args.repeat) for name, run in runs.items()}
        finally:
            if cluster is not None:
                cluster.stop()
    baseline, by_hand = rates["bare loop (pre-encoded)"], rates["bare loop + fastavro encode"]
    table = Table("producer", "events/s", "ratio to bare loop", "ratio to bare loop + fastavro",
                  title=f"Publishing {len(events):,} demo events, best of {args.repeat} (1 local broker)")
    for name, rate in rates.items():
        table.add_row(name, f"{rate:,.0f}", f"{rate / baseline:.2f}", f"{rate / by_hand:.2f}")
    Console().print(table)


if __name__ == "__main__":
    main()
