"""Backfill throughput: one rule version evaluated over a stored state history (state rows/s).

    python bench/backfill_throughput.py --rows 20000000

Synthetic order states (what ``offline.backfill.load_states`` keeps: one row per event, sorted by
entity then sequence), 5 states per order. Timed, in one run on the same rows:
  backfill      ``offline.backfill.evaluate``: the rule by DuckDB over Arrow, vectorized change
                detection, version ids for the changes: what `labelstore rules backfill` runs
  row by row    the same rule evaluated state by state in Python (``RuleEvaluator.evaluate`` on one
                state at a time), on a sample, extrapolated to all rows
and, apart (a first backfill of an entity type builds its state history first), the re-fold:
  re-fold       ``offline.history.state_history`` over --refold-events archived order events (the
                processor benchmark's lifecycles, Avro as published): events/s
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
from rich.console import Console
from rich.table import Table

import example  # noqa: F401  (the fraud example repository)
from labelstore.declarations import load_declarations
from labelstore.rules.evaluation import RuleEvaluator
from labelstore.rules.files import read_rule_file
from labelstore.offline.backfill import evaluate
from labelstore.offline.history import EVENT_COLUMNS, state_history
from processor_throughput import order_records

RULE = Path(__file__).parents[1] / "examples" / "fraud" / "fraud.v2.sql"
STATES_PER_ORDER = 5


def synthetic_states(rows: int, seed: int = 1) -> pa.Table:
    rng = np.random.default_rng(seed)
    orders = rows // STATES_PER_ORDER
    rows = orders * STATES_PER_ORDER
    seq = np.tile(np.arange(STATES_PER_ORDER, dtype=np.int64), orders)
    entity_number = np.repeat(np.arange(orders, dtype=np.int64), STATES_PER_ORDER)
    entity_id = pa.array(np.char.add("order-", entity_number.astype(str)))
    start = 1_767_225_600_000 + entity_number * 1_000
    recorded_at = pa.array(start + seq * 60_000, pa.timestamp("ms", tz="UTC"))
    # Lifecycles like the demo's: created, classified (10% FRAUD), tags added over time, sometimes
    # re-classified; an order's label changes about once or twice in its life.
    fraud = np.repeat(rng.random(orders) < 0.1, STATES_PER_ORDER)
    reclassified = np.repeat(rng.random(orders) < 0.1, STATES_PER_ORDER) & (seq >= 3)
    said = np.where(fraud ^ reclassified, "FRAUD", "NOT_FRAUD")
    classification = np.where(seq == 0, None, said)
    kind = np.repeat(rng.integers(0, 10, orders), STATES_PER_ORDER)
    names = np.array(["", "", "", "", "", "", "", "vip", "false-negative", "false-positive"])
    tagged = (kind >= 7) & (seq >= 2)  # at most one tag per state: offsets advance by one where tagged
    offsets = np.concatenate([[0], np.cumsum(tagged)]).astype(np.int32)
    values = pa.chunked_array([pa.array(names[kind[tagged]])]).combine_chunks()
    tags = pa.ListArray.from_arrays(pa.array(offsets), values)
    table = pa.table({
        "entity_id": entity_id, "seq": pa.array(seq), "event_id": pa.array(np.char.add("e-", np.arange(rows).astype(str))),
        "event_time": recorded_at, "recorded_at": recorded_at, "topic": pa.array(np.full(rows, "orders.events")),
        "partition": pa.array((entity_number % 6).astype(np.int32)), "offset": pa.array(np.arange(rows, dtype=np.int64)),
        "classification": pa.array(classification, pa.string()), "tags": tags,
    })
    return table.select(EVENT_COLUMNS.names + ["classification", "tags"])


def archived_events(events: int) -> pa.Table:
    """An events archive of order lifecycles (10 events each), as the materializer writes its columns."""
    keys, values = zip(*order_records(max(1, events // 10), 10), strict=True)
    count = len(values)
    times = pa.array(1_767_225_600_000 + np.arange(count, dtype=np.int64) * 10, pa.timestamp("ms", tz="UTC"))
    return pa.table({
        "entity_type": pa.array(np.full(count, "order")), "entity_id": pa.array([key.decode() for key in keys]),
        "event_id": pa.array(np.char.add("e-", np.arange(count).astype(str))), "event_time": times,
        "recorded_at": times, "topic": pa.array(np.full(count, "order.events")),
        "partition": pa.array(np.zeros(count, np.int32)), "offset": pa.array(np.arange(count, dtype=np.int64)),
        "avro": pa.array(values, pa.binary()),
    })


def refold_rate(events: int) -> tuple[int, float]:
    archive = archived_events(events)
    connection = duckdb.connect()
    connection.register("events", archive)
    started = time.perf_counter()
    states = state_history(connection, load_declarations()["order"], order="log")
    seconds = time.perf_counter() - started
    assert states.num_rows == archive.num_rows
    return archive.num_rows, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000_000)
    parser.add_argument("--sample", type=int, default=20_000, help="states evaluated row by row")
    parser.add_argument("--refold-events", type=int, default=1_000_000, help="archived events folded again (0: none)")
    args = parser.parse_args()
    console = Console()
    rule = read_rule_file(RULE)
    declaration = load_declarations()["order"]
    console.print(f"generating {args.rows:,} states ...")
    states = synthetic_states(args.rows)

    evaluate(states.slice(0, 10_000), rule, declaration)  # warm-up: DuckDB start, rule validation
    started = time.perf_counter()
    history = evaluate(states, rule, declaration)
    vectorized = time.perf_counter() - started

    evaluator = RuleEvaluator(declaration, [rule])
    sample = states.slice(0, args.sample).select(evaluator.fields).to_pylist()
    started = time.perf_counter()
    for state in sample:
        evaluator.evaluate([state])
    per_row = (time.perf_counter() - started) / len(sample)

    table = Table("implementation", "state rows", "seconds", "state rows/s", "ratio",
                  title=f"Backfill of {rule.key} over {states.num_rows:,} states ({history.num_rows:,} label versions)")
    table.add_row("backfill (DuckDB, vectorized)", f"{states.num_rows:,}", f"{vectorized:.2f}",
                  f"{states.num_rows / vectorized:,.0f}", "1.00")
    table.add_row(f"row by row in Python (sample of {len(sample):,}, extrapolated)", f"{states.num_rows:,}",
                  f"{per_row * states.num_rows:,.0f}", f"{1 / per_row:,.0f}", f"{vectorized / (per_row * states.num_rows):.4f}")
    console.print(table)
    if args.refold_events:
        events, seconds = refold_rate(args.refold_events)
        console.print(f"re-fold (state history from the events archive): {events:,} events in {seconds:.1f} s, "
                      f"{events / seconds:,.0f} events/s")


if __name__ == "__main__":
    main()
