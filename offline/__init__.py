"""Point-in-time (as-of) queries, training-set joins, snapshots and rule backfills."""
