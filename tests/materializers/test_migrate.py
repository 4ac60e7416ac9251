"""An archive of the former layout moves into Iceberg tables, and the materializer resumes after it."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from labelstore.cli import app
from labelstore.errors import LabelstoreError
from labelstore.events.reader import read_raw
from labelstore.materializers.materializer import Materializer
from labelstore.materializers.rows import RowMaker
from labelstore.warehouse import DATASETS, Warehouse
from tests.materializers.test_materializer import a_version, demo_records, produce, with_warehouse


def write_former_layout(settings, root, archived: int) -> None:
    """What the former materializer left after archiving the first ``archived`` events of the order
    topic and the first label version: Hive folders, and the commit record naming their offsets."""
    topic, versions_topic = settings.topics.events_topic("order"), settings.topics.label_versions_topic
    rows = RowMaker({"order": topic}, settings.repository.declarations, codec=settings.repository.codec)
    folders: dict = {}
    records = sorted(read_raw(settings, topic), key=lambda r: (r[2], r[3]))
    for key, value, partition, offset, timestamp, _ in records[:archived]:
        (dataset, folder), row = rows.event(topic, partition, offset, timestamp, key, value)
        folders.setdefault((dataset, folder), []).append(row)
    first_version = next(iter(read_raw(settings, versions_topic)))
    (dataset, folder), row = rows.label_version(first_version[1])
    folders[(dataset, folder)] = [row]
    for (dataset, folder), found in folders.items():
        path = root / dataset / "/".join(f"{k}={v}" for k, v in folder) / "part-000000001-0000.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        schema = DATASETS[dataset][0]
        pq.write_table(pa.Table.from_arrays([pa.array(c, type=t) for c, t in zip(zip(*found), schema.types)],
                                            schema=schema), path)
    offsets: dict = {topic: {}, versions_topic: {first_version[2]: first_version[3] + 1}}
    for _, _, partition, offset, _, _ in records[:archived]:
        offsets[topic][partition] = max(offsets[topic].get(partition, 0), offset + 1)
    (root / "_commits").mkdir()
    (root / "_commits" / "000000001.json").write_text(json.dumps({
        "sequence": 1, "files": [], "offsets": {t: {str(p): o for p, o in ps.items()} for t, ps in offsets.items()},
        "complete_through_ms": None}))


def test_a_former_archive_is_refused_then_migrated_and_resumed(settings, tmp_path, monkeypatch):
    records = demo_records(30, 0)["order"]
    produce(settings, settings.topics.events_topic("order"), records)
    versions = [a_version(f"order-{i}", "positive", i) for i in range(3)]
    produce(settings, settings.topics.label_versions_topic, [(v.entity_id.encode(), v.to_json()) for v in versions])
    settings = with_warehouse(settings, tmp_path / "warehouse")
    root = settings.warehouse.path
    write_former_layout(settings, root, archived=len(records) // 2)

    with pytest.raises(LabelstoreError, match="labelstore warehouse migrate"):
        Warehouse(root).connect()
    with pytest.raises(LabelstoreError, match="labelstore warehouse migrate"):
        Materializer(settings).run(until_caught_up=True)

    monkeypatch.setenv("LABELSTORE_WAREHOUSE__PATH", str(root))
    monkeypatch.setenv("LABELSTORE_TOPICS__PREFIX", settings.topics.prefix)
    done = CliRunner().invoke(app, ["warehouse", "migrate"])
    assert done.exit_code == 0, done.output
    assert f"events: {len(records) // 2:,} rows" in done.output and "label_versions: 1 rows" in done.output
    again = CliRunner().invoke(app, ["warehouse", "migrate"])  # after a crash, it would finish; here, nothing to do
    assert again.exit_code == 0 and "events: migrated before" in again.output

    # The materializer resumes at the former commit's offsets: every record once.
    Materializer(settings).run(until_caught_up=True)
    connection = Warehouse(root).connect()
    rows = connection.execute('SELECT "partition", "offset" FROM events').fetchall()
    assert len(rows) == len(set(rows)) == len(records)
    assert connection.execute("SELECT count(*) FROM label_versions").fetchone() == (len(versions),)
    assert connection.execute("SELECT count(DISTINCT date) FROM events").fetchone()[0] >= 1
