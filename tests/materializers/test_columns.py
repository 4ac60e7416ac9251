"""The archive's column path (``materializers.columns``) against its one-by-one path (``RowMaker.event``).

Every record goes through both; the archive must get the same rows in the same folders, covering
the same offsets, and the same records must be skipped. The column path must also have taken the
records it can (else it could hide behind the one-by-one path and prove nothing).
"""

from __future__ import annotations

import itertools
import math
import time
import zlib
from random import Random

import numpy as np
import pytest

from labelstore.events.column_checks import ColumnChecks
from labelstore.intake import checks_of, event_types_of
from labelstore.materializers.columns import EventColumns, json_text
from labelstore.materializers.rows import Batch, RowMaker, payload_json
from labelstore.schemas.catalog import load_schema_set
from labelstore.schemas.codec import AvroCodec
from labelstore.schemas.columnar import PADDING, BatchDecoder
from labelstore.schemas.compiled import Unsupported
from tests.events.test_typed_events import write_schemas
from tests.fraud_example import EXAMPLE, example_serializer, generate
from tests.processors.malformed import KINDS, MalformedRecords
from tests.schemas.test_compiled import SINK_SCHEMAS, RandomRecords, corruptions, parsed

NOW = int(time.time() * 1000)


def both_ways(rows: RowMaker, topic: str, records: list[tuple[int, int, int, bytes | None, bytes | None]]):
    """(the batch RowMaker.event makes, the batch the column path makes, records it took)."""
    one_by_one = Batch()
    for partition, offset, timestamp, key, value in records:
        made = rows.event(topic, partition, offset, timestamp, key, value)
        if made is not None:
            one_by_one.add(*made, topic, partition, offset)
    columns, in_columns = Batch(), 0
    partitions, offsets, timestamps, keys, values = (list(column) for column in zip(*records, strict=True))
    archived, left = EventColumns(rows.admission).rows(topic, rows.entity_types[topic], partitions, offsets,
                                                       timestamps, keys, values)
    for made in archived:
        columns.add_table(made.folder, made.table, topic, made.covers)
        in_columns += made.table.num_rows
    for index in left.tolist():
        made = rows.event(topic, partitions[index], offsets[index], timestamps[index], keys[index], values[index])
        if made is not None:
            columns.add(*made, topic, partitions[index], offsets[index])
    return one_by_one, columns, in_columns


def assert_same_archive(one_by_one: Batch, columns: Batch) -> None:
    expected, actual = one_by_one.tables(), columns.tables()
    assert [(d, p, c) for d, p, _, c in actual] == [(d, p, c) for d, p, _, c in expected]
    for (_, partition, table, _), (_, _, wanted, _) in zip(actual, expected, strict=True):
        assert table.schema == wanted.schema
        for name in wanted.column_names:
            assert table[name].to_pylist() == wanted[name].to_pylist(), (partition, name)
    assert columns.records == one_by_one.records


def example_records(count: int, seed: int) -> dict[str, list]:
    serializer = example_serializer()
    rng = Random(seed)
    records: dict[str, list] = {}
    for offset, event in enumerate(itertools.islice(generate(count // 8, count // 16, seed=seed), count)):
        topic = f"{event.entity_type}.events"
        recorded = int(event.event_time.timestamp() * 1000) + rng.choice([0, 5, 86_400_000])
        partition = zlib.crc32(event.entity_id.encode()) % 6  # an entity's events share a partition, as keyed
        records.setdefault(topic, []).append((partition, offset, recorded, event.entity_id.encode(),
                                              serializer.encode(event)))
    return records


def in_log_order(records: list) -> list:
    """The records at ascending offsets of their partitions, in the order given, as a fetch returns them."""
    next_offset: dict[int, int] = {}
    ordered = []
    for partition, _, timestamp, key, value in records:
        offset = next_offset[partition] = next_offset.get(partition, -1) + 1
        ordered.append((partition, offset, timestamp, key, value))
    return ordered


def example_rows() -> RowMaker:
    return RowMaker({e: f"{e}.events" for e in EXAMPLE.declarations}, EXAMPLE.declarations, codec=EXAMPLE.codec)


def test_the_examples_events_are_archived_as_columns_with_the_same_rows():
    rows = example_rows()
    for topic, records in example_records(4_000, seed=3).items():
        one_by_one, columns, in_columns = both_ways(rows, topic, records)
        assert_same_archive(one_by_one, columns)
        assert in_columns == len(records), topic  # every good event of the example took the column path


def test_malformed_records_among_good_ones_are_skipped_as_one_by_one():
    rows = example_rows()
    events = list(itertools.islice(generate(200, 50, seed=5), 1_000))
    malformed = list(MalformedRecords(EXAMPLE.codec, max_event_bytes=rows.admission.limits.max_event_bytes,
                                      seed=5).evenly(20 * len(KINDS), events))
    good = example_records(2_000, seed=5)
    for topic, records in good.items():
        bad = [(1, 10_000 + i, NOW, m.key, m.value) for i, m in enumerate(malformed) if f"{m.entity_type}.events" == topic]
        mixed = in_log_order(records[::2] + bad + records[1::2])
        one_by_one, columns, in_columns = both_ways(rows, topic, mixed)
        assert_same_archive(one_by_one, columns)
        assert one_by_one.records < len(mixed) and in_columns >= len(records)


def test_corrupted_bytes_are_decided_one_by_one():
    rows, rng = example_rows(), Random(9)
    for topic, records in example_records(400, seed=9).items():
        damaged: list = []
        for partition, offset, timestamp, key, value in records:
            damaged.append((partition, offset, timestamp, key, value))
            damaged += [(partition, offset, timestamp, key, corrupt) for corrupt in corruptions(value, rng)]
        one_by_one, columns, in_columns = both_ways(rows, topic, in_log_order(damaged))
        assert_same_archive(one_by_one, columns)
        assert in_columns >= len(records)


SUPPORTED = {name: schema for name, schema in SINK_SCHEMAS.items() if not name.endswith(("Everything.avsc", "Either.avsc"))}
SUPPORTED["thing/com.example.sink.Supported.avsc"] = {
    "type": "record", "name": "Supported", "namespace": "com.example.sink", "labelstore.role": "event", "fields": [
        {"name": "flag", "type": "boolean"},
        {"name": "small", "type": "int"},
        {"name": "big", "type": "long", "labelstore.constraints": {"ge": -(2**40)}},
        {"name": "ratio", "type": "float"},
        {"name": "precise", "type": "double", "labelstore.constraints": {"le": 1e9}},
        {"name": "text", "type": "string", "labelstore.constraints": {"max_length": 100}},
        {"name": "code", "type": ["null", "string"], "labelstore.constraints": {"pattern": "^[a-z]"}},
        {"name": "kind", "type": "com.example.sink.Kind"},
        {"name": "maybe_point", "type": ["null", "com.example.sink.Point"]},
        {"name": "point", "type": "com.example.sink.Point"},
        {"name": "maybe_long_last", "type": ["long", "null"]},
        {"name": "id", "type": {"type": "string", "logicalType": "uuid"}},
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "nothing", "type": "null"},
    ]}


@pytest.fixture(scope="module")
def supported(tmp_path_factory) -> AvroCodec:
    return AvroCodec(load_schema_set(write_schemas(tmp_path_factory.mktemp("supported"), SUPPORTED)))


def test_every_supported_type_reads_and_writes_its_json_as_one_by_one(supported):
    schema = parsed(supported, "Supported")
    records = RandomRecords(schema, seed=11)
    values = [records.value(schema) for _ in range(400)]
    for value in values[::7]:
        value["text"] = 'quote " back \\ ctl \x01 del \x7f é'
        value["precise"] = math.nan
    bodies = [supported._encode_by_fastavro("Supported", {**v, "entity_type": "thing", "event_type": "Supported",  # noqa: SLF001
                                                           "entity_id": "t", "source": "s"})
              for v in values]
    decoder = BatchDecoder(schema)
    lengths = np.array([len(b) for b in bodies])
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    buffer = np.frombuffer(b"".join([*bodies, bytes(PADDING)]), dtype=np.uint8)
    decoded = decoder.decode(buffer, starts + 10, starts + lengths)
    payloads = json_text(decoded.record.fields["payload"], buffer, len(bodies)).to_pylist()
    failing = ColumnChecks(event_types_of(supported).catalog).failing("Supported", decoded.record, buffer)
    taken = 0
    for index, body in enumerate(bodies):
        if decoded.bad[index]:
            continue
        taken += 1
        record = supported.decode(body).record
        assert payloads[index] == payload_json(record["payload"]), index
        assert failing[index] == (not checks_of(supported).passes("Supported", record)), (index, record)
    assert taken > len(bodies) // 2 and 0 < failing[~decoded.bad].sum() < taken


def test_schemas_with_parts_it_does_not_read_are_left_to_the_one_by_one_path(tmp_path):
    everything = AvroCodec(load_schema_set(write_schemas(tmp_path, SINK_SCHEMAS)))
    for event_type, part in (("Everything", "type 'bytes'"), ("Either", "a union of several non-null types")):
        with pytest.raises(Unsupported, match=part):
            BatchDecoder(parsed(everything, event_type))
