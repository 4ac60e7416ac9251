"""Reproducible training-label snapshots: labels.parquet + manifest.json under snapshots/<name>/.

A snapshot is an as-of query with a fixed ``known_at``: events recorded later cannot change it,
so the same snapshot taken again later has the same content hash. The manifest says what it
covers: time bounds, the Kafka offsets of the events known at ``known_at``, the rule versions,
the row count and the hash.
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


class SnapshotExistsError(LabelstoreError):
    """A snapshot of that name exists with other content."""


def snapshot(warehouse: Warehouse, name: str, labels: Sequence[str], *, known_at: datetime | str,
             valid_at: datetime | str | None = None, maturity: Maturity = "all",
             rules: Sequence[LabelRule] | None = None, replace: bool = False) -> dict[str, Any]:
    """Write (or confirm) a snapshot; returns its manifest."""
    if not NAME.match(name):
        raise QueryError(f"snapshot name {name!r}: use letters, digits, '.', '_' and '-' (at most 128)")
    known = instant(known_at, "known_at")
    valid = instant(valid_at, "valid_at")
    _check_archive_reaches(warehouse, known)
    rules = warehouse.repository.initial_rules() if rules is None else list(rules)
    table = as_of(warehouse, labels, known_at=known, valid_at=valid, maturity=maturity, rules=rules)
    table = table.sort_by([("label", "ascending"), ("entity_id", "ascending")])
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
    _write(folder, table, manifest)
    return manifest


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
