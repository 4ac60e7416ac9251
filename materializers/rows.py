"""Kafka records to warehouse rows, grouped by the dataset folder they belong to."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from labelstore.declarations import EntityDeclaration
from labelstore.fold import to_epoch_ms
from labelstore.intake import DEFAULT_LIMITS, Admission, Limits, Rejection
from labelstore.repository import RepositoryWatch
from labelstore.labels import LabelVersion
from labelstore.warehouse import DATASETS, value_text
from labelstore.schemas.codec import AvroCodec

Folder = tuple[str, tuple[tuple[str, str], ...]]  # (dataset, ((partition column, value), ...))


@dataclass
class Batch:
    """Rows waiting for the next commit, and the offsets they cover."""

    rows: dict[Folder, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    covers: dict[Folder, dict[str, dict[int, list[int]]]] = field(default_factory=lambda: defaultdict(dict))
    records: int = 0
    skipped: int = 0

    def add(self, folder: Folder, row: dict[str, Any], topic: str, partition: int, offset: int) -> None:
        self.rows[folder].append(row)
        span = self.covers[folder].setdefault(topic, {}).setdefault(partition, [offset, offset])
        span[1] = offset
        self.records += 1

    def tables(self) -> list[tuple[str, dict[str, str], pa.Table, dict[str, dict[int, tuple[int, int]]]]]:
        result = []
        for (dataset, partition), rows in sorted(self.rows.items()):
            schema, _ = DATASETS[dataset]
            table = pa.Table.from_pylist(rows, schema=schema).sort_by(_SORT_KEYS[dataset])
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
        row = {
            "event_id": record["event_id"], "entity_id": record["entity_id"], "event_type": decoded.event_type,
            "event_time": record["event_time"], "recorded_at": timestamp_ms, "source": record["source"],
            "payload": json.dumps(record["payload"], default=_json_default, sort_keys=True),
            "topic": topic, "partition": partition, "offset": offset, "avro": value,
        }
        return ("events", (("entity_type", decoded.entity_type), ("date", _date(timestamp_ms)))), row

    def label_version(self, value: bytes | None) -> tuple[Folder, dict] | None:
        if value is None:
            return None
        version = LabelVersion.from_json(value)
        cause = version.caused_by
        row = {
            "version_id": str(version.version_id), "entity_type": version.entity_type, "entity_id": version.entity_id,
            "rule_version": version.rule_version, "value": value_text(version.value),
            "previous_value": value_text(version.previous_value), "event_time": version.event_time,
            "recorded_at": version.recorded_at, "event_id": str(cause.event_id), "cause_topic": cause.topic,
            "cause_partition": cause.partition, "cause_offset": cause.offset,
        }
        return ("label_versions", (("label", version.label), ("date", _date(version.recorded_at)))), row


def _date(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).strftime("%Y-%m-%d")


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return to_epoch_ms(value)
    return str(value)  # UUIDs, decimals
