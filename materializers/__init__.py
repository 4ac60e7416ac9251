"""Kafka to Parquet and DuckDB: every event and label version, for point-in-time queries."""
