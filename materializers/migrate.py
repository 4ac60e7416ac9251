"""A warehouse of the former layout (Hive-partitioned Parquet and ``_commits/*.json``) into Iceberg tables.

1. The former folders (``events``, ``label_versions``, ``_commits``) move under ``_former/``,
   each by one rename; the Iceberg tables take their places.
2. Each table without a snapshot gets every former row of its dataset in one commit, whose
   summary holds the offsets of the former last commit: the materializer resumes right there.

Run again after a crash, it finishes: moved folders stay moved, a table with a snapshot is done,
and files of an interrupted commit are deleted when the materializer starts.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import duckdb

from labelstore import iceberg
from labelstore.errors import LabelstoreError
from labelstore.warehouse import DATASETS, LAYOUTS, Warehouse

FORMER = "_former"


def former_layout(root: Path) -> bool:
    """Whether the folder holds an archive of the former layout not migrated yet."""
    return (root / "_commits").is_dir()


def migrate(warehouse: Warehouse, versions_topic: str) -> dict[str, int]:
    """Rows migrated per table (0 for a table migrated before)."""
    former = warehouse.root / FORMER
    if not former_layout(warehouse.root) and not (former / "_commits").is_dir():
        raise LabelstoreError(f"{warehouse.root} holds no archive of the former layout (no _commits folder)")
    former.mkdir(exist_ok=True)
    for name in (*DATASETS, "_commits"):
        if (warehouse.root / name).exists() and not (former / name).exists():
            os.replace(warehouse.root / name, former / name)
    commit = _last_commit(former / "_commits")
    migrated = {}
    for dataset in DATASETS:
        table = warehouse.table(dataset, create=True)
        if table.current_snapshot() is not None:
            migrated[dataset] = 0
            continue
        in_dataset = {topic: partitions for topic, partitions in commit["offsets"].items()
                      if (topic == versions_topic) == (dataset == "label_versions")}
        properties = iceberg.commit_properties(in_dataset, commit["sequence"], commit.get("complete_through_ms"))
        with duckdb.connect() as connection:
            rows = _former_rows(connection, former / dataset, dataset)
        table.append(LAYOUTS[dataset].to_iceberg(rows), snapshot_properties=properties)
        migrated[dataset] = rows.num_rows
    return migrated


def _last_commit(folder: Path) -> dict:
    records = sorted(folder.glob("*.json"))
    if not records:
        return {"sequence": 0, "offsets": {}}
    data = json.loads(records[-1].read_text())
    data["offsets"] = {t: {int(p): o for p, o in ps.items()} for t, ps in data["offsets"].items()}
    return data


def _former_rows(connection: duckdb.DuckDBPyConnection, folder: Path, dataset: str):
    layout = LAYOUTS[dataset]
    if not any(folder.glob("*/*/*.parquet")):
        return layout.arrow_schema.empty_table()
    connection.execute("SET TimeZone = 'UTC'")
    glob = (folder / "*" / "*" / "*.parquet").as_posix().replace("'", "''")
    columns = ", ".join(f'"{name}"' for name in layout.arrow_schema.names)
    keys = {"events": 'entity_type, date, entity_id, "offset"',
            "label_versions": "label, date, entity_id, recorded_at, cause_offset"}[dataset]
    # Rows of a partition in the order the materializer writes them.
    return connection.sql(f"SELECT {columns} FROM read_parquet('{glob}', hive_partitioning = true, "
                          f"hive_types_autocast = false) ORDER BY {keys}").to_arrow_table()
