"""Atomic, resumable commits of Parquet files and the Kafka offsets they cover.

A commit: files are written under ``_staging/<seq>/``; then ``_commits/<seq>.json`` names them and
holds the next offset of every partition (written to a temporary name, synced, renamed: that
rename is the commit point); then the files move to their dataset folders. After a crash,
``recover`` finishes the moves of the last commit and deletes anything staged but not committed,
so every record is visible exactly once and readers never see a partial file.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from labelstore.warehouse import Commit, Warehouse


KEEP_COMMITS = 20


class CommitLog:
    def __init__(self, warehouse: Warehouse) -> None:
        self.warehouse = warehouse
        last = warehouse.last_commit()
        self.sequence = last.sequence if last else 0
        self._staged: list[str] = []

    def recover(self) -> None:
        last = self.warehouse.last_commit()
        if last is not None:
            self._move_into_place(last)
        shutil.rmtree(self.warehouse.staging_dir, ignore_errors=True)

    def stage(self, dataset: str, partition: Mapping[str, str], table: pa.Table,
              covers: Mapping[str, Mapping[int, tuple[int, int]]]) -> None:
        """Write one file of the next commit; ``covers`` is topic -> partition -> (first, last) offset."""
        folder = Path(dataset, *(f"{key}={value}" for key, value in partition.items()))
        relative = folder / f"part-{self.sequence + 1:09d}-{len(self._staged):04d}.parquet"
        staged = self._staging(self.sequence + 1) / relative
        staged.parent.mkdir(parents=True, exist_ok=True)
        metadata = {b"labelstore.kafka_offsets": json.dumps(
            {topic: {str(p): list(span) for p, span in spans.items()} for topic, spans in covers.items()}).encode()}
        pq.write_table(table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata}), staged,
                       compression="zstd")
        _fsync(staged)
        self._staged.append(relative.as_posix())

    def commit(self, offsets: Mapping[str, Mapping[int, int]], complete_through_ms: int | None = None) -> Commit:
        self.sequence += 1
        commit = Commit(self.sequence, tuple(self._staged), {t: dict(ps) for t, ps in offsets.items()},
                        complete_through_ms)
        self.warehouse.commits_dir.mkdir(parents=True, exist_ok=True)
        final = self.warehouse.commits_dir / f"{commit.sequence:09d}.json"
        temporary = final.with_suffix(".json.tmp")
        temporary.write_text(commit.to_json())
        _fsync(temporary)
        os.replace(temporary, final)
        _fsync(self.warehouse.commits_dir)
        self._move_into_place(commit)
        shutil.rmtree(self._staging(commit.sequence), ignore_errors=True)
        self._staged = []
        for old in sorted(self.warehouse.commits_dir.glob("*.json"))[:-KEEP_COMMITS]:
            old.unlink()  # their files are in place; only the last commit is ever read back
        return commit

    def _move_into_place(self, commit: Commit) -> None:
        for relative in commit.files:
            final = self.warehouse.root / relative
            staged = self._staging(commit.sequence) / relative
            if staged.exists():
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(staged, final)

    def _staging(self, sequence: int) -> Path:
        return self.warehouse.staging_dir / f"{sequence:09d}"


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
