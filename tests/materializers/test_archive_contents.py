"""The archive holds, row for row and file by file, what a plain per-record archiver would write.

The reference below is the materializer as it was before its hot path was rebuilt: fastavro
decodes each record, the full event model checks it, ``json.dumps`` writes the payload, a
``datetime`` names the day, and each row is a dict. The materializer must write the same rows
(every column, the Avro bytes included) into the same partition folders, in the same order
within each file, and skip the same bad records.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from labelstore.events.exceptions import InvalidEventError
from labelstore.fold import to_epoch_ms
from labelstore.labels import LabelVersion
from labelstore.materializers.materializer import Materializer
from labelstore.warehouse import DATASETS, Warehouse, value_text
from tests.materializers.test_materializer import a_version, demo_records, produce, with_warehouse

pytestmark = pytest.mark.timeout(300)


def reference_event_row(codec, event_types, declarations, topic, partition, offset, timestamp, key, value):
    """The archive row of an event record, or None for a record the archive leaves out."""
    entity_type = topic.removesuffix(".events").rpartition(".")[2]
    if not key or value is None:
        return None
    try:
        decoded = codec._decode_by_fastavro(value)  # noqa: SLF001 - fastavro alone, as before
    except Exception:  # noqa: BLE001 - any undecodable record is left out
        return None
    record = decoded.record
    if decoded.entity_type != entity_type or record["entity_id"].encode() != key:
        return None
    if record["entity_type"] != decoded.entity_type or record["event_type"] != decoded.event_type:
        return None
    try:
        event_types.parse(record)
    except InvalidEventError:
        return None
    if decoded.event_type not in declarations[entity_type].events:
        return None
    event_time = to_epoch_ms(record["event_time"])
    if event_time < 0 or (timestamp >= 0 and event_time > timestamp + 86_400_000):
        return None
    row = {
        "event_id": str(record["event_id"]), "entity_id": record["entity_id"], "event_type": decoded.event_type,
        "event_time": event_time, "recorded_at": timestamp, "source": record["source"],
        "payload": json.dumps(record["payload"], default=_json_default, sort_keys=True),
        "topic": topic, "partition": partition, "offset": offset, "avro": value,
    }
    return ("events", f"entity_type={entity_type}", f"date={_date(timestamp)}"), row


def reference_version_row(value):
    version = LabelVersion.from_json(value)
    cause = version.caused_by
    row = {
        "version_id": str(version.version_id), "entity_type": version.entity_type, "entity_id": version.entity_id,
        "rule_version": version.rule_version, "value": value_text(version.value),
        "previous_value": value_text(version.previous_value), "event_time": version.event_time,
        "recorded_at": version.recorded_at, "event_id": str(cause.event_id), "cause_topic": cause.topic,
        "cause_partition": cause.partition, "cause_offset": cause.offset,
    }
    return ("label_versions", f"label={version.label}", f"date={_date(version.recorded_at)}"), row


def _date(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).strftime("%Y-%m-%d")


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return to_epoch_ms(value)
    return str(value)


def archived(root: Path) -> dict[tuple[str, str, str], list[dict]]:
    """Rows of every file the tables' current snapshots name, by partition folder, each file's rows
    in its order (files in commit order), in the archive's column types."""
    found: dict[tuple[str, str, str], list[dict]] = defaultdict(list)
    warehouse = Warehouse(root)
    for dataset, (schema, _) in DATASETS.items():
        for path in warehouse.data_files(dataset):
            assert path.is_relative_to(warehouse.dataset_dir(dataset) / "data")
            rows = pq.read_table(path).select(schema.names).cast(schema)
            found[(dataset, path.parent.parent.name, path.parent.name)] += rows.to_pylist()
    return found


def test_the_archive_is_what_a_plain_archiver_writes(settings, tmp_path):
    from labelstore.intake import event_types_of

    records = demo_records(300, 60)
    codec = settings.repository.codec
    bad = [(b"order-x", b"not avro"), (None, records["order"][0][1]), (b"someone-else", records["order"][1][1]),
           (records["order"][2][0], records["order"][2][1] + b"\x00"), (records["order"][3][0], records["order"][3][1][:-3])]
    produce(settings, settings.topics.events_topic("order"), records["order"][:500] + bad + records["order"][500:])
    produce(settings, settings.topics.events_topic("content"), records["content"])
    versions = [a_version(f"order-{i % 7}", ["positive", "negative", None][i % 3], i) for i in range(50)]
    produce(settings, settings.topics.label_versions_topic, [(v.entity_id.encode(), v.to_json()) for v in versions])

    warehouse = with_warehouse(settings, tmp_path / "warehouse")
    stats = Materializer(warehouse).run(until_caught_up=True)

    from labelstore.events.reader import read_raw

    expected: dict[tuple[str, str, str], list[dict]] = defaultdict(list)
    skipped = 0
    event_types, declarations = event_types_of(codec), settings.repository.declarations
    for entity_type in ("order", "content"):
        topic = settings.topics.events_topic(entity_type)
        for key, value, partition, offset, timestamp, _ in read_raw(settings, topic):
            made = reference_event_row(codec, event_types, declarations, topic, partition, offset, timestamp, key, value)
            if made is None:
                skipped += 1
            else:
                expected[made[0]].append(made[1])
    for _, value, *_ in read_raw(settings, settings.topics.label_versions_topic):
        folder, row = reference_version_row(value)
        expected[folder].append(row)

    assert stats.skipped == skipped == len(bad)
    found = archived(tmp_path / "warehouse")
    assert sorted(found) == sorted(expected)
    for folder, rows in expected.items():
        schema = DATASETS[folder[0]][0]
        keys = {"events": ["entity_id", "offset"], "label_versions": ["entity_id", "recorded_at", "cause_offset"]}
        table = pa.Table.from_pylist(rows, schema=schema).sort_by([(k, "ascending") for k in keys[folder[0]]])
        assert found[folder] == table.to_pylist(), folder
