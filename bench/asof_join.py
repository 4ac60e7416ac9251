"""Point-in-time spine join on the known axis: labelstore against the usual ways to write it.

    python bench/asof_join.py --entities 4000000 --versions 20000000 --spine 10000000
    python bench/asof_join.py --entities 200000 --versions 1000000 --spine 500000   # quick

One run, one synthetic data set, every implementation on it:
  labelstore       offline.asof.as_of(Warehouse(root), "fraud", spine=..., known_at="ts")
  duckdb (hand)    read_parquet over the label folder, ties removed with QUALIFY, ASOF LEFT JOIN
  pandas           merge_asof (both sides sorted by time, ties removed by log offset first)
  polars           join_asof (the same)
  feast            FeatureStore.get_historical_features with the DuckDB offline store, in a virtual
                   environment of its own (feast pins pandas < 3); spine and versions go over as Parquet

The question: each spine row's fraud label as known at its ``ts``: the version with the latest
``recorded_at <= ts`` (versions at the same ``recorded_at``: the higher ``cause_offset`` wins),
NULL if none. Every result is compared row by row with the hand-written DuckDB query.

Data: label versions appended to the warehouse's Iceberg table (``Warehouse.append``), a few
commits per day, so a few files per day partition
(``label_versions/data/label=fraud/date=YYYY-MM-DD/*.parquet``), each sorted by (entity_id,
recorded_at, cause_offset) as the materializer writes them. About 5% of an entity's later versions share the previous version's ``recorded_at`` (one
broker batch). The spine has duplicate rows, unknown entities, rows before an entity's first
version and rows exactly at a version's ``recorded_at``.

Timed: from Parquet on disk and the spine as an Arrow table in memory to the labels in spine order
(each library's own frame conversions included). The files are read once before the first timing
so every implementation starts with a warm page cache. Feast: only ``get_historical_features``
and the result's materialization (plus putting rows back in spine order) are timed; its import
and repository set-up are reported apart.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DAY_MS = 86_400_000
T0_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
PARTITIONS = 6
FILES_PER_DAY = 3
LABEL = "fraud"
VALUES = (None, "positive", "negative")  # codes 0, 1, 2
REQUIREMENTS = Path(__file__).with_name("requirements-feast.txt")
FEAST_VENV = Path.home() / ".cache" / "labelstore" / "bench-feast-venv"


# ----------------------------------------------------------------------------------------------
# Data


def entity_ids(numbers):
    """'ord-00000042' for 42: fixed width, so string order is number order."""
    import pyarrow as pa
    import pyarrow.compute as pc

    digits = pc.utf8_lpad(pc.cast(pa.array(numbers, pa.int64()), pa.string()), 8, "0")
    return pc.binary_join_element_wise("ord-", digits, "")


def random_uuids(count: int, rng):
    """Random UUID-shaped strings, built in numpy (no Python loop)."""
    import numpy as np
    import pyarrow as pa

    hexdigits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    nibbles = rng.integers(0, 16, size=(count, 32), dtype=np.uint8)
    text = np.full((count, 36), ord("-"), dtype=np.uint8)
    columns = [i for i in range(36) if i not in (8, 13, 18, 23)]
    text[:, columns] = hexdigits[nibbles]
    text[:, 14] = ord("4")
    offsets = np.arange(count + 1, dtype=np.int32) * 36
    return pa.StringArray.from_buffers(count, pa.py_buffer(offsets), pa.py_buffer(text.tobytes()))


def constant_strings(text: str, count: int):
    import numpy as np
    import pyarrow as pa

    data = np.frombuffer(text.encode(), dtype=np.uint8)
    offsets = np.arange(count + 1, dtype=np.int32) * len(data)
    return pa.StringArray.from_buffers(count, pa.py_buffer(offsets), pa.py_buffer(np.tile(data, count).tobytes()))


def generate_versions(root: Path, entities: int, versions: int, seed: int) -> dict:
    """Label versions in the warehouse layout; returns what the spine generator needs."""
    import numpy as np
    import pyarrow as pa

    from labelstore.warehouse import LABEL_VERSIONS_SCHEMA

    rng = np.random.default_rng(seed)
    # Which entity each version belongs to (multinomial: ~versions/entities each, a few with none),
    # generated in (entity, sequence) order.
    entity = np.sort(rng.integers(0, entities, size=versions, dtype=np.int64))
    counts = np.bincount(entity, minlength=entities)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    first = np.zeros(versions, dtype=bool)
    first[starts[counts > 0]] = True
    at_start = np.minimum(starts, versions - 1)  # entities without versions at the end start past it; repeated 0 times
    # recorded_at: an entity's first version at a random time over 60 days, then exponential gaps
    # (mean 2 days); 5% of later versions share the previous one's time (same broker batch).
    gaps = rng.exponential(2 * DAY_MS, size=versions).astype(np.int64) + 1
    gaps[~first & (rng.random(versions) < 0.05)] = 0
    gaps[first] = rng.integers(0, 60 * DAY_MS, size=int(first.sum()))  # from T0: keeps the sums small
    running = np.cumsum(gaps)
    recorded_at = T0_MS + running - np.repeat(running[at_start] - gaps[at_start], counts)
    event_time = recorded_at - rng.integers(0, 60_000, size=versions)
    # Values change on every version (a version is emitted only on change): 0 NULL, 1 positive, 2 negative.
    steps = rng.integers(1, 3, size=versions)
    steps[first] = rng.integers(1, 3, size=int(first.sum()))
    codes_running = np.cumsum(steps)
    codes = (codes_running - np.repeat(codes_running[at_start] - steps[at_start], counts)) % 3
    codes[first] = steps[first]
    previous = np.zeros(versions, dtype=np.int64)
    previous[1:] = codes[:-1]
    previous[first] = 0
    # Offsets: log order of the label's cause within its partition (an entity lives in one partition).
    partition = (entity % PARTITIONS).astype(np.int32)
    order = np.argsort(partition.astype(np.int64) << 42 | (recorded_at - T0_MS + DAY_MS), kind="stable")
    offset = np.empty(versions, dtype=np.int64)
    sizes = np.bincount(partition, minlength=PARTITIONS)
    offset[order] = np.arange(versions) - np.repeat(np.concatenate(([0], np.cumsum(sizes)[:-1])), sizes)
    # Files: per day, FILES_PER_DAY time slices (commits); each file sorted by entity, time, offset,
    # which generation order already is, so a stable sort by file keeps it.
    day = (recorded_at - T0_MS) // DAY_MS
    slot = day * FILES_PER_DAY + ((recorded_at - T0_MS) % DAY_MS) * FILES_PER_DAY // DAY_MS
    by_file = np.argsort(slot, kind="stable")

    value_dictionary = pa.array(VALUES, pa.string())
    columns = {
        "version_id": random_uuids(versions, rng),
        "entity_type": constant_strings("order", versions),
        "entity_id": entity_ids(entity),
        "rule_version": pa.array(np.ones(versions, dtype=np.int32)),
        "value": value_dictionary.take(pa.array(codes)),
        "previous_value": value_dictionary.take(pa.array(previous)),
        "event_time": pa.array(event_time, pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
        "recorded_at": pa.array(recorded_at, pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
        "event_id": random_uuids(versions, rng),
        "cause_topic": constant_strings("orders.events", versions),
        "cause_partition": pa.array(partition),
        "cause_offset": pa.array(offset),
    }
    table = pa.table(columns).select(LABEL_VERSIONS_SCHEMA.names).cast(LABEL_VERSIONS_SCHEMA).take(pa.array(by_file))
    slots = slot[by_file]
    bounds = np.flatnonzero(np.diff(slots)) + 1
    pieces = list(zip(np.concatenate(([0], bounds)), np.concatenate((bounds, [versions])), strict=True))
    from labelstore.warehouse import Warehouse

    warehouse = Warehouse(root)
    table = table.append_column("label", constant_strings(LABEL, versions))
    for begin, end in pieces:  # one commit each, as the materializer would have made them
        warehouse.append("label_versions", table.slice(begin, end - begin))
    return {"counts": counts, "starts": starts, "recorded_at": recorded_at, "ties": int(((gaps == 0) & ~first).sum())}


def generate_spine(facts: dict, entities: int, rows: int, seed: int):
    """(entity_id, ts): 3% unknown entities, ~10% before the entity's first version, 15% exactly at
    one of its versions' recorded_at, 5% duplicates of other rows; in random order."""
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed + 1)
    counts, starts, recorded_at = facts["counts"], facts["starts"], facts["recorded_at"]
    entity = rng.integers(0, entities, size=rows, dtype=np.int64)
    has = counts[entity] > 0
    first = np.where(has, recorded_at[np.minimum(starts[entity], len(recorded_at) - 1)], T0_MS)
    last = np.where(has, recorded_at[np.minimum(starts[entity] + counts[entity] - 1, len(recorded_at) - 1)], T0_MS + 60 * DAY_MS)
    kind = rng.random(rows)
    ts = first + (rng.random(rows) * (last - first + 5 * DAY_MS)).astype(np.int64)
    before = kind < 0.10
    ts[before] = first[before] - rng.integers(1, 3 * DAY_MS, size=int(before.sum()))
    exact = (kind >= 0.10) & (kind < 0.25) & has
    pick = starts[entity[exact]] + (rng.random(int(exact.sum())) * counts[entity[exact]]).astype(np.int64)
    ts[exact] = recorded_at[pick]
    unknown = rng.random(rows) < 0.03
    entity[unknown] = entities + rng.integers(0, entities, size=int(unknown.sum()))
    duplicate = np.flatnonzero(rng.random(rows) < 0.05)
    source = rng.integers(0, rows, size=len(duplicate))
    entity[duplicate], ts[duplicate] = entity[source], ts[source]
    return pa.table({"entity_id": entity_ids(entity),
                     "ts": pa.array(ts, pa.int64()).cast(pa.timestamp("ms", tz="UTC"))})


# ----------------------------------------------------------------------------------------------
# Implementations: each returns the label of every spine row, in spine order (an Arrow array).


def run_labelstore(root: Path, spine):
    from labelstore.repository import current
    from labelstore.warehouse import Warehouse
    from labelstore.offline.asof import as_of

    example = current(Path(__file__).resolve().parents[1] / "examples" / "fraud")  # its fraud rule
    return as_of(Warehouse(root, repository=example), LABEL, spine=spine, known_at="ts").column(LABEL)


def _duckdb_connection():
    import duckdb

    connection = duckdb.connect()
    connection.execute("SET enable_progress_bar = false")
    connection.execute("SET TimeZone = 'UTC'")
    return connection


def run_duckdb(root: Path, spine):
    import numpy as np
    import pyarrow as pa

    connection = _duckdb_connection()
    try:
        numbered = spine.append_column("rn", pa.array(np.arange(spine.num_rows, dtype=np.int64)))
        connection.register("spine", numbered)
        files = (root / "label_versions" / "data" / f"label={LABEL}" / "*" / "*.parquet").as_posix()
        result = connection.sql(f"""
            WITH versions AS (
                SELECT entity_id, recorded_at, value
                FROM read_parquet('{files}')
                WHERE entity_type = 'order'
                QUALIFY row_number() OVER (PARTITION BY entity_id, recorded_at ORDER BY cause_offset DESC) = 1
            )
            SELECT s.entity_id, s.ts, v.value AS {LABEL}
            FROM spine s ASOF LEFT JOIN versions v ON s.entity_id = v.entity_id AND s.ts >= v.recorded_at
            ORDER BY s.rn""").to_arrow_table()
    finally:
        connection.close()
    return result.column(LABEL)


def run_pandas(root: Path, spine):
    import pandas as pd
    import pyarrow as pa

    versions = pd.read_parquet(root / "label_versions" / "data" / f"label={LABEL}",
                               columns=["entity_type", "entity_id", "recorded_at", "cause_offset", "value"],
                               filters=[("entity_type", "=", "order")])
    # merge_asof has no tie-breaker: keep the last offset of each (entity, recorded_at) first.
    versions = (versions.sort_values(["entity_id", "recorded_at", "cause_offset"])
                .drop_duplicates(["entity_id", "recorded_at"], keep="last")
                .sort_values("recorded_at", kind="stable")[["entity_id", "recorded_at", "value"]])
    left = spine.to_pandas()
    versions["recorded_at"] = versions["recorded_at"].astype(left["ts"].dtype)  # Iceberg keeps microseconds
    left["rn"] = range(len(left))
    left = left.sort_values("ts", kind="stable")
    joined = pd.merge_asof(left, versions, left_on="ts", right_on="recorded_at", by="entity_id",
                           direction="backward", allow_exact_matches=True)
    joined = joined.sort_values("rn").rename(columns={"value": LABEL})
    return pa.array(joined[LABEL].to_numpy(dtype=object), pa.string(), from_pandas=True)


def run_polars(root: Path, spine):
    import polars as pl

    versions = (pl.scan_parquet(root / "label_versions" / "data" / f"label={LABEL}" / "**" / "*.parquet", hive_partitioning=False)
                .filter(pl.col("entity_type") == "order")
                .select("entity_id", pl.col("recorded_at").dt.cast_time_unit("ms"), "cause_offset", "value")
                .sort("entity_id", "recorded_at", "cause_offset")
                .unique(["entity_id", "recorded_at"], keep="last", maintain_order=True)
                .sort("recorded_at")
                .collect())
    left = pl.from_arrow(spine).with_row_index("rn").sort("ts")
    joined = left.join_asof(versions, left_on="ts", right_on="recorded_at", by="entity_id", strategy="backward",
                            check_sortedness=False)  # sorted by ts above, so within every entity too
    return joined.sort("rn").get_column("value").to_arrow()


# ----------------------------------------------------------------------------------------------
# Feast, in its own virtual environment


def feast_python(venv: Path) -> Path:
    """The venv's interpreter; created (or re-created after the requirements change) on demand."""
    python = venv / "bin" / "python"
    stamp = venv / ".requirements.sha256"
    wanted = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    print(f"creating {venv} from {REQUIREMENTS.name} (once) ...", flush=True)
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "-r", str(REQUIREMENTS)], check=True)
    stamp.write_text(wanted)
    return python


def export_for_feast(root: Path, spine, folder: Path) -> None:
    """Feast orders versions by (timestamp_field, created_timestamp_column) descending: recorded_at,
    then the log offset as a timestamp (epoch + offset microseconds), which is monotonic in it."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    connection = _duckdb_connection()
    try:
        files = (root / "label_versions" / "data" / f"label={LABEL}" / "*" / "*.parquet").as_posix()
        connection.execute(f"""
            COPY (SELECT entity_id, recorded_at, make_timestamp(cause_offset)::TIMESTAMPTZ AS logged, value
                  FROM read_parquet('{files}') WHERE entity_type = 'order')
            TO '{(folder / "versions.parquet").as_posix()}' (FORMAT parquet, COMPRESSION zstd)""")
    finally:
        connection.close()
    entity_df = pa.table({"entity_id": spine.column("entity_id"), "event_timestamp": spine.column("ts"),
                          "rn": pa.array(np.arange(spine.num_rows, dtype=np.int64))})
    pq.write_table(entity_df, folder / "spine.parquet", compression="zstd")


def run_feast(root: Path, spine, folder: Path, venv: Path, repeat: int) -> tuple[float, object, dict]:
    import pyarrow.parquet as pq

    started = time.perf_counter()
    export_for_feast(root, spine, folder)
    exported = time.perf_counter() - started
    python = feast_python(venv)
    subprocess.run([str(python), str(Path(__file__).resolve()), "--feast-worker", str(folder), "--repeat", str(repeat)],
                   check=True)
    timings = json.loads((folder / "timings.json").read_text())
    timings["export_s"] = exported
    result = pq.read_table(folder / "result.parquet")
    return min(timings["runs_s"]), result.column("value"), timings


def feast_worker(folder: Path, repeat: int) -> None:
    """Runs inside the Feast virtual environment (no labelstore imports here)."""
    import warnings

    warnings.filterwarnings("ignore", category=DeprecationWarning)  # ibis on DuckDB 2.0
    started = time.perf_counter()
    from datetime import timedelta

    import pandas as pd
    import pyarrow.parquet as pq
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource
    from feast.types import String
    from feast.value_type import ValueType

    warnings.filterwarnings("ignore", category=DeprecationWarning)  # again: importing feast resets the filters
    imported = time.perf_counter()
    repo = folder / "repo"
    repo.mkdir(parents=True, exist_ok=True)
    (repo / "feature_store.yaml").write_text(
        "project: labelstore_bench\n"
        f"registry: {(repo / 'registry.db').as_posix()}\n"
        "provider: local\n"
        "offline_store:\n  type: duckdb\n"
        f"online_store:\n  type: sqlite\n  path: {(repo / 'online.db').as_posix()}\n"
        "entity_key_serialization_version: 3\n")
    store = FeatureStore(repo_path=str(repo))
    order = Entity(name="order", join_keys=["entity_id"], value_type=ValueType.STRING)
    source = FileSource(name="label_versions", path=(folder / "versions.parquet").as_posix(),
                        timestamp_field="recorded_at", created_timestamp_column="logged")
    view = FeatureView(name="fraud_versions", entities=[order], ttl=timedelta(days=3650),
                       schema=[Field(name="value", dtype=String)], source=source, online=False)
    store.apply([order, view])
    entity_df: pd.DataFrame = pq.read_table(folder / "spine.parquet").to_pandas()
    ready = time.perf_counter()

    runs, result = [], None
    for _ in range(repeat):
        result = None
        given = entity_df.copy()  # Feast converts the frame it is given in place: a fresh one per run (not timed)
        begin = time.perf_counter()
        result = store.get_historical_features(entity_df=given, features=["fraud_versions:value"]).to_arrow()
        result = result.sort_by("rn").select(["rn", "value"])  # back in spine order, as the others return it
        runs.append(time.perf_counter() - begin)

    pq.write_table(result, folder / "result.parquet")
    (folder / "timings.json").write_text(json.dumps({
        "import_s": imported - started, "setup_s": ready - imported, "runs_s": runs, "rows": result.num_rows}))


# ----------------------------------------------------------------------------------------------


def codes_of(labels):
    """0 NULL, 1 positive, 2 negative, 3 anything else."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    labels = labels.combine_chunks() if isinstance(labels, pa.ChunkedArray) else labels
    labels = labels.cast(pa.string())
    index = pc.index_in(labels, value_set=pa.array(["positive", "negative"]))
    codes = pc.fill_null(pc.add(index, 1), 3).to_numpy(zero_copy_only=False).astype(np.int8)
    codes[pc.is_null(labels).to_numpy(zero_copy_only=False)] = 0
    return codes


def tie_sensitive(root: Path, spine) -> int:
    """Spine rows whose answer changes if ties at one recorded_at were won by the lowest offset."""
    connection = _duckdb_connection()
    try:
        connection.register("spine", spine)
        files = (root / "label_versions" / "data" / f"label={LABEL}" / "*" / "*.parquet").as_posix()
        return connection.sql(f"""
            WITH last AS (SELECT entity_id, recorded_at, value FROM read_parquet('{files}')
                          QUALIFY row_number() OVER (PARTITION BY entity_id, recorded_at ORDER BY cause_offset DESC) = 1),
                 first AS (SELECT entity_id, recorded_at, value FROM read_parquet('{files}')
                           QUALIFY row_number() OVER (PARTITION BY entity_id, recorded_at ORDER BY cause_offset) = 1)
            SELECT count(*) FILTER (WHERE l.value IS DISTINCT FROM f.value)
            FROM spine s ASOF LEFT JOIN last l ON s.entity_id = l.entity_id AND s.ts >= l.recorded_at
                         ASOF LEFT JOIN first f ON s.entity_id = f.entity_id AND s.ts >= f.recorded_at""").fetchall()[0][0]
    finally:
        connection.close()


def warm(root: Path) -> None:
    for path in (root / "label_versions").rglob("*.parquet"):
        path.read_bytes()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entities", type=int, default=4_000_000)
    parser.add_argument("--versions", type=int, default=20_000_000)
    parser.add_argument("--spine", type=int, default=10_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each implementation; the fastest is reported")
    parser.add_argument("--skip", default="", help="comma-separated: labelstore,duckdb,pandas,polars,feast")
    parser.add_argument("--workdir", type=Path, help="keep the data here (default: a temporary folder, removed)")
    parser.add_argument("--feast-venv", type=Path, default=FEAST_VENV)
    parser.add_argument("--feast-worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.feast_worker:
        feast_worker(args.feast_worker, args.repeat)
        return
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
        run(args, args.workdir)
    else:
        with tempfile.TemporaryDirectory(prefix="asof-bench-") as directory:
            run(args, Path(directory))


def run(args, work: Path) -> None:
    import numpy as np
    from rich.console import Console
    from rich.table import Table

    console = Console(width=130)
    root = work / "warehouse"
    skip = {name.strip() for name in args.skip.split(",") if name.strip()}
    started = time.perf_counter()
    if (root / "label_versions").exists():
        raise SystemExit(f"{root} already holds label versions: use an empty --workdir")
    facts = generate_versions(root, args.entities, args.versions, args.seed)
    spine = generate_spine(facts, args.entities, args.spine, args.seed)
    ties = facts["ties"]
    del facts
    gc.collect()
    console.print(f"data: {args.versions:,} versions of {args.entities:,} entities ({ties:,} tied with the previous "
                  f"version's recorded_at) in {root}/label_versions ({facts_summary(root)}); spine {spine.num_rows:,} "
                  f"rows; generated in {time.perf_counter() - started:.1f} s", highlight=False)
    console.print(f"spine rows whose label depends on the tie-break by offset: {tie_sensitive(root, spine):,}", highlight=False)
    warm(root)

    implementations = [
        ("labelstore as_of", "labelstore", lambda: run_labelstore(root, spine)),
        ("duckdb ASOF JOIN (hand-written)", "duckdb", lambda: run_duckdb(root, spine)),
        ("pandas merge_asof", "pandas", lambda: run_pandas(root, spine)),
        ("polars join_asof", "polars", lambda: run_polars(root, spine)),
    ]
    results: dict[str, tuple[float, np.ndarray, int]] = {}
    notes: list[str] = []
    for title, key, function in implementations:
        if key in skip:
            continue
        runs = []
        for _ in range(args.repeat):
            gc.collect()
            begin = time.perf_counter()
            labels = function()
            runs.append(time.perf_counter() - begin)
            codes, rows = codes_of(labels), len(labels)
            del labels
        results[title] = (min(runs), codes, rows)
        console.print(f"  {title}: {', '.join(f'{r:.2f}' for r in runs)} s", highlight=False)
    if "feast" not in skip:
        try:
            seconds, labels, timings = run_feast(root, spine, work / "feast", args.feast_venv, args.repeat)
            results["feast get_historical_features (duckdb)"] = (seconds, codes_of(labels), len(labels))
            notes.append(f"feast: import {timings['import_s']:.1f} s, repository set-up and spine to pandas "
                         f"{timings['setup_s']:.1f} s, Parquet export for it {timings['export_s']:.1f} s (not timed)")
            console.print(f"  feast: {', '.join(f'{r:.2f}' for r in timings['runs_s'])} s", highlight=False)
        except subprocess.CalledProcessError as error:
            notes.append(f"feast failed: {error}")

    reference_title = "duckdb ASOF JOIN (hand-written)"
    reference = results.get(reference_title)
    table = Table(title=f"Spine as-of join, known axis: {spine.num_rows:,} spine rows, "
                        f"{args.versions:,} versions, {args.entities:,} entities ({os.cpu_count()} cores)")
    for column in ("implementation", "seconds", "rows/s", "x hand-written duckdb", "mismatches"):
        table.add_column(column, justify="left" if column == "implementation" else "right")
    for title, (seconds, codes, rows) in results.items():
        ratio = f"{seconds / reference[0]:.2f}" if reference else "-"
        if reference is None or title == reference_title:
            mismatches = "reference" if title == reference_title else "-"
        elif rows != len(reference[1]):
            mismatches = f"{rows:,} rows, not {len(reference[1]):,}"
        else:
            mismatches = f"{int((codes != reference[1]).sum()):,}"
        table.add_row(title, f"{seconds:.2f}", f"{spine.num_rows / seconds:,.0f}", ratio, mismatches)
    console.print(table)
    if reference is not None:
        counts = np.bincount(reference[1], minlength=4)
        console.print(f"reference labels: {counts[1]:,} positive, {counts[2]:,} negative, {counts[0]:,} NULL")
    for note in notes:
        console.print(note, highlight=False)


def facts_summary(root: Path) -> str:
    files = list((root / "label_versions").rglob("*.parquet"))
    size = sum(path.stat().st_size for path in files)
    days = len({path.parent.name for path in files})
    return f"{len(files)} files over {days} days, {size / 2**20:,.0f} MiB"


if __name__ == "__main__":
    main()
