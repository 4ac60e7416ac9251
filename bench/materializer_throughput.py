"""Materializer throughput: records/s from Kafka to durable, committed Parquet.

    python bench/materializer_throughput.py --events 1000000 --repeat 3

One local broker; each implementation runs ``--repeat`` times, alternated, and the best run of
each counts (the others are printed). The same pre-published order events are archived by
  bare copy       a confluent-kafka consumer writing raw key/value/offset columns to Parquet
                  (no decoding, no partitioning, no commit log): the floor of this pipeline
  materializer    labelstore's materializer (admission check, Avro decode, Hive partitions,
                  sorted zstd files, fsync, commit log), with its default commit size
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from confluent_kafka import Consumer, TopicPartition
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent))
from processor_throughput import fresh_settings, order_records, publish_raw  # noqa: E402

from labelstore.events.admin import end_offsets  # noqa: E402
from labelstore.localkafka import LocalKafkaCluster  # noqa: E402
from labelstore.settings import LocalKafkaSettings, Settings, WarehouseSettings  # noqa: E402
from labelstore.materializers.materializer import Materializer  # noqa: E402


def bare_copy(settings: Settings, out: Path, events: int, group: str = "bench-bare") -> None:
    topic = settings.topics.events_topic("order")
    consumer = Consumer({"bootstrap.servers": settings.kafka.bootstrap_servers, "group.id": group,
                         "enable.auto.commit": False, "queued.min.messages": 200_000, "fetch.queue.backoff.ms": 10})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(settings.kafka.partitions)])
    out.mkdir(parents=True)
    seen, part = 0, 0
    while seen < events:
        columns: dict[str, list] = {"key": [], "value": [], "partition": [], "offset": [], "timestamp": []}
        for message in consumer.consume(100_000, timeout=1.0):
            columns["key"].append(message.key())
            columns["value"].append(message.value())
            columns["partition"].append(message.partition())
            columns["offset"].append(message.offset())
            columns["timestamp"].append(message.timestamp()[1])
        if columns["key"]:
            pq.write_table(pa.table(columns), out / f"part-{part:05d}.parquet", compression="zstd")
            part += 1
            seen += len(columns["key"])
    consumer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="alternated runs of each; the best counts")
    args = parser.parse_args()
    console = Console()
    records = list(order_records(max(1, args.events // 10), 10))
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        scratch_path = Path(scratch)
        with LocalKafkaCluster(LocalKafkaSettings(), data_dir=scratch_path / "kafka") as cluster:
            settings = fresh_settings(cluster.bootstrap_servers, scratch_path / "unused")
            publish_raw(settings, iter(records))
            topic = settings.topics.events_topic("order")
            assert sum(end_offsets(settings, {topic: list(range(6))})[topic].values()) == len(records)

            bare, archived = [], []
            for run in range(args.repeat):  # alternated: a noisy neighbour slows both alike
                started = time.perf_counter()
                bare_copy(settings, scratch_path / f"bare-{run}", len(records), group=f"bench-bare-{run}")
                bare.append(time.perf_counter() - started)
                warehouse = WarehouseSettings(path=scratch_path / f"warehouse-{run}")
                started = time.perf_counter()
                stats = Materializer(settings.model_copy(update={"warehouse": warehouse})).run(until_caught_up=True)
                archived.append(time.perf_counter() - started)
                assert stats.records == len(records), stats
            rows = [("bare copy (raw bytes to Parquet)", bare), (f"materializer ({stats.commits} commits)", archived)]
    table = Table("implementation", "best s", "all runs s", "records/s (best)", "ratio to bare copy (best)",
                  title=f"Kafka -> durable Parquet, {len(records):,} order events (1 local broker)")
    floor = min(rows[0][1])
    for name, seconds in rows:
        table.add_row(name, f"{min(seconds):.1f}", " ".join(f"{s:.1f}" for s in seconds),
                      f"{len(records) / min(seconds):,.0f}", f"{floor / min(seconds):.2f}")
    console.print(table)


if __name__ == "__main__":
    main()
