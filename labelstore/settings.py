"""One frozen settings object, loaded once at the entry point and passed down.

Environment variables use the ``LABELSTORE_`` prefix and ``__`` for nesting, for example
``LABELSTORE_KAFKA__BOOTSTRAP_SERVERS=127.0.0.1:9092`` or ``LABELSTORE_TOPICS__PREFIX=test.``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

KAFKA_VERSION = "4.3.1"


class _Group(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class KafkaSettings(_Group):
    """How to reach the cluster and how producers behave on it."""

    bootstrap_servers: str | None = Field(
        default=None,
        description="host:port list; unset means the local broker started by `labelstore kafka up`",
    )
    replication_factor: int = Field(default=1, ge=1)
    min_insync_replicas: int = Field(default=1, ge=1)
    partitions: int = Field(default=6, ge=1)
    delivery_timeout_ms: int = Field(
        default=120_000, ge=1_000, description="how long a publish may retry before it fails"
    )
    linger_ms: int = Field(default=5, ge=0)


class TopicSettings(_Group):
    """Topic names; ``prefix`` isolates environments (and tests) on one cluster."""

    prefix: str = ""
    entity_topics: dict[str, str] = Field(
        default_factory=lambda: {"order": "orders.events", "content": "content.events"}
    )
    label_versions: str = "labels.versions"
    label_latest: str = "labels.latest"
    dead_letter: str = "events.dlq"
    rules: str = "labels.rules"

    def events_topic(self, entity_type: str) -> str:
        try:
            return self.prefix + self.entity_topics[entity_type]
        except KeyError:
            known = ", ".join(sorted(self.entity_topics))
            raise KeyError(f"no topic for entity type {entity_type!r}; known: {known}") from None

    @property
    def label_versions_topic(self) -> str:
        return self.prefix + self.label_versions

    @property
    def label_latest_topic(self) -> str:
        return self.prefix + self.label_latest

    @property
    def dead_letter_topic(self) -> str:
        return self.prefix + self.dead_letter

    @property
    def rules_topic(self) -> str:
        return self.prefix + self.rules


class LocalKafkaSettings(_Group):
    """The broker labelstore runs by itself from Maven Central jars."""

    version: str = KAFKA_VERSION
    cache_dir: Path = Field(default_factory=lambda: Path.home() / ".cache" / "labelstore")
    state_dir: Path = Field(default_factory=lambda: Path(".labelstore") / "kafka")
    heap: str = "512m"


class ProcessorSettings(_Group):
    """The real-time label processor (a Faust app)."""

    app_id: str = "labelstore-processor"
    transport: Literal["aiokafka", "confluent"] = "aiokafka"
    store: str = Field(default="memory://", description="memory:// or rocksdb:// (needs rocksdict)")
    data_dir: Path = Field(default_factory=lambda: Path(".labelstore") / "processor")
    web_host: str = "127.0.0.1"
    web_port: int = Field(default=6066, ge=1, le=65535)
    processing_guarantee: Literal["at_least_once", "exactly_once"] = "at_least_once"
    batch_size: int = Field(default=1_000, ge=1, description="events per micro-batch, at most")
    batch_within_s: float = Field(
        default=0.01, ge=0,
        description="when the worker is behind, wait at most this long for more events to fill a batch; "
                    "otherwise a batch is what is waiting")
    session_timeout_s: float = Field(default=10.0, gt=0)
    fetch_max_wait_ms: int = Field(default=20, ge=1, description="longest a fetch waits for new events")
    validate_payloads: bool = True


class WarehouseSettings(_Group):
    """Where the materializer archives events and label versions (Parquet + a DuckDB file)."""

    path: Path = Field(default_factory=lambda: Path("warehouse"))
    flush_records: int = Field(default=100_000, ge=1, description="records buffered before a commit, at most")
    flush_interval_s: float = Field(default=5.0, gt=0, description="longest a record waits for a commit")


class RulesSettings(_Group):
    """The rule catalog: any SQLAlchemy URL (PostgreSQL: postgresql+psycopg://user:pass@host/db)."""

    catalog_url: str = "sqlite:///.labelstore/catalog.sqlite"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="LABELSTORE_", env_nested_delimiter="__", frozen=True, extra="forbid"
    )

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)
    local_kafka: LocalKafkaSettings = Field(default_factory=LocalKafkaSettings)
    processor: ProcessorSettings = Field(default_factory=ProcessorSettings)
    warehouse: WarehouseSettings = Field(default_factory=WarehouseSettings)
    rules: RulesSettings = Field(default_factory=RulesSettings)

    def to_environment(self) -> dict[str, str]:
        """These settings as ``LABELSTORE_*`` variables, to hand to a child process."""
        environment = {}
        for group, values in self.model_dump(mode="json").items():
            for name, value in values.items():
                if value is not None:
                    text = value if isinstance(value, str) else json.dumps(value)
                    environment[f"LABELSTORE_{group.upper()}__{name.upper()}"] = text
        return environment
