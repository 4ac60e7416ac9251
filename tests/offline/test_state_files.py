"""The state history kept beside the archive is written whole, whoever else writes it at the time."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pyarrow.parquet as pq

from labelstore.offline.backfill import _write_atomically


def test_writers_of_the_same_file_at_once_each_succeed_and_leave_a_whole_file(tmp_path):
    path = tmp_path / "states" / "entity_type=order" / "states.parquet"
    table = pa.table({"entity_id": [f"order-{i}" for i in range(50_000)], "seq": list(range(50_000))})
    with ThreadPoolExecutor(8) as pool:
        for done in [pool.submit(_write_atomically, table, path) for _ in range(16)]:
            done.result()  # with one shared temporary name, a rename found the file taken away
    assert pq.read_table(path).equals(table)
    assert [p.name for p in path.parent.iterdir()] == ["states.parquet"]  # no temporary left behind
