"""Reproducible training-label snapshots: labels.parquet + manifest.json under snapshots/<name>/.

A snapshot is an as-of query with a fixed ``known_at``: events recorded later cannot change it,
so the same snapshot taken again later has the same content hash. The manifest says what it
covers: time bounds, the Kafka offsets of the events known at ``known_at``, the rule versions,
the row count, the hash, and the Iceberg snapshot of each table it read. Those snapshots are
tagged ``labelstore-snapshot-<name>`` in their tables, so expiring old snapshots keeps them, and
``reread`` answers the same query from them again, by id.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from labelstore.errors import LabelstoreError
from labelstore.rules.model import LabelRule
from labelstore.warehouse import Warehouse
from labelstore.offline.asof import Maturity, QueryError, as_of, instant

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


TAG_PREFIX = "labelstore-snapshot-"


class SnapshotExistsError(LabelstoreError):
    """A snapshot of that name exists with other content."""


class SnapshotMismatchError(LabelstoreError):
    """A snapshot re-read from its Iceberg snapshots differs from what it recorded."""


def snapshot(warehouse: Warehouse, name: str, labels: Sequence[str], *, known_at: datetime | str,
             valid_at: datetime | str | None = None, maturity: Maturity = "all",
             rules: Sequence[LabelRule] | None = None, replace: bool = False) -> dict[str, Any]:
    """Write (or confirm) a snapshot; returns its manifest."""
    if not NAME.match(name):
        raise QueryError(f"snapshot name {name!r}: use letters, digits, '.', '_' and '-' (at most 128)")
    known = instant(known_at, "known_at")
    valid = instant(valid_at, "valid_at")
    warehouse = warehouse.at(warehouse.current_snapshots())  # what is committed meanwhile is not read
    _check_archive_reaches(warehouse, known)
    rules = warehouse.repository.initial_rules() if rules is None else list(rules)
    table = _labels(warehouse, labels, known, valid, maturity, rules)
    manifest = {
        "name": name,
        "labels": list(labels) if not isinstance(labels, str) else [labels],
        "known_at": known.isoformat(),
        "valid_at": valid.isoformat() if valid else None,
        "maturity": maturity,
        "rule_versions": {r.name: r.version for r in rules if r.name in table.column("label").to_pylist()},
        "event_offsets": _offsets_known_at(warehouse, known),
        "rows": table.num_rows,
        "content_sha256": content_hash(table),
        "iceberg_snapshots": warehouse.pinned,
        "iceberg_tag": TAG_PREFIX + name,
    }
    folder = warehouse.snapshots_dir / name
    existing = folder / "manifest.json"
    if existing.exists():
        previous = json.loads(existing.read_text())
        if previous["content_sha256"] == manifest["content_sha256"] and not replace:
            return previous
        if not replace:
            raise SnapshotExistsError(
                f"snapshot {name!r} exists with other content (hash {previous['content_sha256'][:12]}, "
                f"now {manifest['content_sha256'][:12]}); choose another name or replace it")
    _tag(warehouse, manifest)
    _write(folder, table, manifest)
    return manifest


def reread(warehouse: Warehouse, name: str) -> pa.Table:
    """The snapshot's labels computed again from the Iceberg snapshots its manifest names; a
    ``SnapshotMismatchError`` if they differ from what it recorded."""
    path = warehouse.snapshots_dir / name / "manifest.json"
    if not path.exists():
        raise QueryError(f"no snapshot {name!r} in {warehouse.snapshots_dir}")
    manifest = json.loads(path.read_text())
    if not manifest.get("iceberg_snapshots"):
        raise QueryError(f"snapshot {name!r} names no Iceberg snapshots (taken before the warehouse's tables were "
                         f"Iceberg tables): take it again to re-read it later")
    pinned = warehouse.at({dataset: int(i) for dataset, i in manifest["iceberg_snapshots"].items()})
    rules = _recorded_rules(warehouse, manifest)
    table = _labels(pinned, manifest["labels"], instant(manifest["known_at"], "known_at"),
                    instant(manifest["valid_at"], "valid_at"), manifest["maturity"], rules)
    found = content_hash(table)
    if found != manifest["content_sha256"]:
        raise SnapshotMismatchError(f"snapshot {name!r} re-read from Iceberg snapshots {manifest['iceberg_snapshots']} "
                                    f"gives hash {found[:12]}, not {manifest['content_sha256'][:12]}")
    return table


def _labels(warehouse: Warehouse, labels, known: datetime, valid: datetime | None, maturity: Maturity,
            rules: Sequence[LabelRule]) -> pa.Table:
    table = as_of(warehouse, labels, known_at=known, valid_at=valid, maturity=maturity, rules=rules)
    return table.sort_by([("label", "ascending"), ("entity_id", "ascending")])


def _recorded_rules(warehouse: Warehouse, manifest: dict[str, Any]) -> list[LabelRule]:
    rules = warehouse.repository.initial_rules()
    for label, version in manifest["rule_versions"].items():
        current = next((r.version for r in rules if r.name == label), None)
        if current != version:
            raise QueryError(f"snapshot {manifest['name']!r} used {label} v{version}; the repository's rule is "
                             f"v{current}: re-read it from a checkout with that rule version")
    return rules


def _tag(warehouse: Warehouse, manifest: dict[str, Any]) -> None:
    """Tag the snapshots read, in each table (a tag of the same name moves)."""
    for dataset, snapshot_id in manifest["iceberg_snapshots"].items():
        table = warehouse.table(dataset)
        refs = table.metadata.refs
        if manifest["iceberg_tag"] in refs and refs[manifest["iceberg_tag"]].snapshot_id == snapshot_id:
            continue
        with table.manage_snapshots() as snapshots:
            if manifest["iceberg_tag"] in refs:
                snapshots.remove_tag(manifest["iceberg_tag"])
            snapshots.create_tag(snapshot_id, manifest["iceberg_tag"])


def content_hash(table: pa.Table) -> str:
    """SHA-256 of the rows in order, independent of how Parquet lays them out."""
    digest = hashlib.sha256()
    digest.update(table.schema.to_string(show_schema_metadata=False).encode())
    for batch in table.combine_chunks().to_batches():
        for column in batch.columns:
            digest.update(json.dumps(column.to_pylist(), default=str).encode())
    return digest.hexdigest()


def _write(folder: Path, table: pa.Table, manifest: dict[str, Any]) -> None:
    # Write beside, then rename: a reader sees the old snapshot or the new one, never half of one.
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = folder.with_name(f".{folder.name}.tmp")
    staging.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, staging / "labels.parquet", compression="zstd")
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    if folder.exists():
        retired = folder.with_name(f".{folder.name}.old")
        os.replace(folder, retired)
        os.replace(staging, folder)
        for path in retired.iterdir():
            path.unlink()
        retired.rmdir()
    else:
        os.replace(staging, folder)


def _check_archive_reaches(warehouse: Warehouse, known_at: datetime) -> None:
    connection = warehouse.connect()
    try:
        (latest,) = connection.execute("SELECT max(recorded_at) FROM events").fetchall()[0]
    finally:
        connection.close()
    commit = warehouse.last_commit()
    complete = commit.complete_through_ms if commit else None
    reaches = max(filter(None, [latest, complete and datetime.fromtimestamp(complete / 1000, UTC)]), default=None)
    if reaches is None or reaches < known_at:
        raise QueryError(
            f"the events archive only reaches {reaches.isoformat() if reaches else '(nothing archived)'}; "
            f"a snapshot known at {known_at.isoformat()} could still change: run `labelstore materialize` "
            "or choose an earlier --known-at")


def _offsets_known_at(warehouse: Warehouse, known_at: datetime) -> dict[str, dict[str, int]]:
    """Per event topic and partition, the next offset after the last event known at ``known_at``."""
    connection = warehouse.connect()
    try:
        rows = connection.execute(
            'SELECT topic, "partition", max("offset") + 1 FROM events WHERE recorded_at <= ? GROUP BY ALL ORDER BY ALL',
            [known_at]).fetchall()
    finally:
        connection.close()
    offsets: dict[str, dict[str, int]] = {}
    for topic, partition, next_offset in rows:
        offsets.setdefault(topic, {})[str(partition)] = next_offset
    return offsets
