"""The spine join on both engines: labelstore's as_of with engine="duckdb" and engine="spark".

    python bench/asof_spark.py                                         # 1M spine rows over 4M versions
    python bench/asof_spark.py --entities 20000 --versions 160000 --spine 50000   # quick
    python bench/asof_spark.py --master spark://host:7077              # a cluster

One synthetic warehouse, made by ``bench/asof_join.py``'s generators (label versions appended to
the Iceberg table a few commits per day, ~5% sharing the previous version's ``recorded_at``; a
spine with duplicates, unknown entities, rows before any version and rows exactly at one), and
the same question to both engines: each spine row's ``fraud`` label as known at its ``ts``.
The answers are compared row by row.

Timed: from the warehouse on disk and the spine as an Arrow table in memory to the spine with its
label column, each engine's conversions included. The SparkSession is started before the first
timing (its start is reported apart); the first Spark run warms the JVM, so the best of
``--repeat`` runs is reported, and the first run beside it.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from asof_join import LABEL, codes_of, generate_spine, generate_versions  # noqa: E402 - the bench folder's module


def fraud_rule():
    from labelstore.repository import current

    example = current(Path(__file__).resolve().parents[1] / "examples" / "fraud")
    return example, [rule for rule in example.initial_rules() if rule.name == LABEL]


def timed(function, repeat: int) -> tuple[list[float], object]:
    runs, result = [], None
    for _ in range(repeat):
        result = None
        gc.collect()
        begin = time.perf_counter()
        result = function()
        runs.append(time.perf_counter() - begin)
    return runs, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entities", type=int, default=500_000)
    parser.add_argument("--versions", type=int, default=4_000_000)
    parser.add_argument("--spine", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--master", default="local[*]", help="Spark master URL")
    parser.add_argument("--driver-memory", default="4g")
    parser.add_argument("--shuffle-partitions", type=int, default=8)
    parser.add_argument("--workdir", type=Path, help="keep the data here (default: a temporary folder, removed)")
    args = parser.parse_args()
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
        run(args, args.workdir)
    else:
        with tempfile.TemporaryDirectory(prefix="asof-spark-bench-") as directory:
            run(args, Path(directory))


def run(args, work: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    from labelstore.offline.asof import as_of
    from labelstore.offline.spark.session import spark_session
    from labelstore.settings import SparkSettings
    from labelstore.warehouse import Warehouse

    console = Console(width=130)
    started = time.perf_counter()
    facts = generate_versions(work / "warehouse", args.entities, args.versions, args.seed)
    spine = generate_spine(facts, args.entities, args.spine, args.seed)
    del facts
    console.print(f"data: {args.versions:,} versions of {args.entities:,} entities, spine {spine.num_rows:,} rows; "
                  f"generated in {time.perf_counter() - started:.1f} s", highlight=False)
    repository, rules = fraud_rule()
    warehouse = Warehouse(work / "warehouse", repository=repository)

    begin = time.perf_counter()
    spark_session(SparkSettings(master=args.master, driver_memory=args.driver_memory,
                                shuffle_partitions=args.shuffle_partitions, config={"spark.ui.enabled": "false"}))
    session_start = time.perf_counter() - begin

    results = {}
    for engine in ("duckdb", "spark"):
        runs, table = timed(lambda engine=engine: as_of(warehouse, LABEL, spine=spine, known_at="ts", rules=rules,
                                                        engine=engine), args.repeat)
        results[engine] = (runs, codes_of(table.column(LABEL)), table.num_rows)
        console.print(f"  {engine}: {', '.join(f'{r:.2f}' for r in runs)} s", highlight=False)
    print_table(console, Table, args, spine.num_rows, results, session_start)


def print_table(console, Table, args, rows: int, results: dict, session_start: float) -> None:
    reference_runs, reference_codes, _ = results["duckdb"]
    table = Table(title=f"Spine as-of join, known axis: {rows:,} spine rows over {args.versions:,} versions "
                        f"({os.cpu_count()} cores, Spark master {args.master})")
    for column in ("engine", "best s", "first s", "rows/s", "x duckdb", "mismatches"):
        table.add_column(column, justify="left" if column == "engine" else "right")
    for engine, (runs, codes, count) in results.items():
        mismatches = "reference" if engine == "duckdb" else (
            f"{int((codes != reference_codes).sum()):,}" if count == rows else f"{count:,} rows, not {rows:,}")
        table.add_row(engine, f"{min(runs):.2f}", f"{runs[0]:.2f}", f"{rows / min(runs):,.0f}",
                      f"{min(runs) / min(reference_runs):.2f}", mismatches)
    console.print(table)
    console.print(f"SparkSession start (not timed above): {session_start:.1f} s", highlight=False)


if __name__ == "__main__":
    main()
