"""Kafka records to warehouse rows, grouped by the dataset folder they belong to."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any

import pyarrow as pa

from labelstore.declarations import EntityDeclaration
from labelstore.fold import EPOCH, to_epoch_ms
from labelstore.intake import DEFAULT_LIMITS, Admission, Limits, Rejection
from labelstore.repository import RepositoryWatch
from labelstore.labels import LabelVersion
from labelstore.warehouse import DATASETS, value_text
from labelstore.schemas.codec import AvroCodec

Folder = tuple[str, tuple[tuple[str, str], ...]]  # (dataset, ((partition column, value), ...))


@dataclass
class Batch:
    """Rows waiting for the next commit (tuples in their dataset's column order), and the offsets they cover."""

    rows: dict[Folder, list[tuple]] = field(default_factory=lambda: defaultdict(list))
    made: dict[Folder, list[pa.Table]] = field(default_factory=lambda: defaultdict(list))  # rows made as columns
    covers: dict[Folder, dict[str, dict[int, list[int]]]] = field(default_factory=lambda: defaultdict(dict))
    records: int = 0
    skipped: int = 0

    def add(self, folder: Folder, row: tuple, topic: str, partition: int, offset: int) -> None:
        self.rows[folder].append(row)
        spans = self.covers[folder]
        span = spans[topic].get(partition) if topic in spans else None
        if span is None:
            spans.setdefault(topic, {})[partition] = [offset, offset]
        elif offset > span[1]:
            span[1] = offset
        elif offset < span[0]:  # a record decided one by one after later ones of its fetch went in as columns
            span[0] = offset
        self.records += 1

    def add_table(self, folder: Folder, table: pa.Table, topic: str, covers: Mapping[int, tuple[int, int]]) -> None:
        self.made[folder].append(table)
        spans = self.covers[folder].setdefault(topic, {})
        for partition, (first, last) in covers.items():
            span = spans.get(partition)
            spans[partition] = [first, last] if span is None else [min(span[0], first), max(span[1], last)]
        self.records += table.num_rows

    def tables(self) -> list[tuple[str, dict[str, str], pa.Table, dict[str, dict[int, tuple[int, int]]]]]:
        result = []
        for dataset, partition in sorted(self.rows.keys() | self.made.keys()):
            schema, _ = DATASETS[dataset]
            parts = list(self.made.get((dataset, partition), ()))
            rows = self.rows.get((dataset, partition))
            if rows:
                # Column by column: building Arrow from one dict per row cost 2 us a record.
                columns = [pa.array(column, type=kind) for column, kind in zip(zip(*rows), schema.types, strict=True)]
                parts.append(pa.Table.from_arrays(columns, schema=schema))
            table = pa.concat_tables(parts).sort_by(_SORT_KEYS[dataset])
            covers = {t: {p: (a, b) for p, (a, b) in ps.items()} for t, ps in self.covers[(dataset, partition)].items()}
            result.append((dataset, dict(partition), table, covers))
        return result


# Sorted by entity, then log order: as-of lookups read few row groups per entity.
_SORT_KEYS = {
    "events": [("entity_id", "ascending"), ("offset", "ascending")],
    "label_versions": [("entity_id", "ascending"), ("recorded_at", "ascending"), ("cause_offset", "ascending")],
}


class RowMaker:
    def __init__(self, entity_topics: Mapping[str, str], declarations: Mapping[str, EntityDeclaration], *,
                 validate_payloads: bool = True, codec: AvroCodec | None = None,
                 watch: RepositoryWatch | None = None, limits: Limits = DEFAULT_LIMITS) -> None:
        self.entity_types = {topic: entity_type for entity_type, topic in entity_topics.items()}
        self.admission = Admission(codec or AvroCodec(), declarations, validate_payloads=validate_payloads,
                                   watch=watch, limits=limits)

    def event(self, topic: str, partition: int, offset: int, timestamp_ms: int, key: bytes | None,
              value: bytes | None) -> tuple[Folder, dict] | None:
        """The archive row of an event; None for a record the processor sends to the dead-letter topic."""
        entity_type = self.entity_types[topic]
        decoded = self.admission.admit(entity_type, key, value, timestamp_ms)
        if isinstance(decoded, Rejection):
            return None
        record = decoded.record
        row = (record["event_id"], record["entity_id"], decoded.event_type, record["event_time"], timestamp_ms,
               record["source"], payload_json(record["payload"]), topic, partition, offset, value)  # EVENTS_SCHEMA
        return events_folder(decoded.entity_type, timestamp_ms), row

    def label_version(self, value: bytes | None) -> tuple[Folder, dict] | None:
        if value is None:
            return None
        version = LabelVersion.from_json(value)
        cause = version.caused_by
        row = (str(version.version_id), version.entity_type, version.entity_id, version.rule_version,
               value_text(version.value), value_text(version.previous_value), version.event_time, version.recorded_at,
               str(cause.event_id), cause.topic, cause.partition, cause.offset)  # LABEL_VERSIONS_SCHEMA
        return ("label_versions", (("label", version.label), ("date", _date(version.recorded_at)))), row


DAY_MS = 86_400_000
_DAYS: dict[int, str] = {}


def events_folder(entity_type: str, recorded_at_ms: int) -> Folder:
    """The archive folder of an event of ``entity_type`` the broker recorded at ``recorded_at_ms``."""
    return "events", (("entity_type", entity_type), ("date", _date(recorded_at_ms)))


def _date(epoch_ms: int) -> str:
    """The UTC day of an epoch-millisecond time, ``YYYY-MM-DD`` (a name per day, made once)."""
    day = epoch_ms // DAY_MS
    name = _DAYS.get(day)
    if name is None:
        name = _DAYS[day] = (EPOCH + timedelta(days=day)).strftime("%Y-%m-%d")
    return name


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return to_epoch_ms(value)
    return str(value)  # UUIDs, decimals


# ``json.dumps(payload, default=_json_default, sort_keys=True)``, with its encoder made once: made
# per call it took half the time of the call.
_PAYLOAD_ENCODER = c_make_encoder(None, _json_default, encode_basestring_ascii, None, ": ", ", ", True, False, True) \
    if c_make_encoder is not None else None


def payload_json(payload: Any) -> str:
    """The payload's JSON text in the archive: keys sorted, timestamps in epoch milliseconds."""
    if _PAYLOAD_ENCODER is None:
        return json.dumps(payload, default=_json_default, sort_keys=True)
    return "".join(_PAYLOAD_ENCODER(payload, 0))
