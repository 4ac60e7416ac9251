"""One frozen settings object, loaded once at the entry point and passed down.

Where a value comes from, strongest first: arguments, environment variables (``LABELSTORE_``
prefix, ``__`` for nesting, e.g. ``LABELSTORE_KAFKA__BOOTSTRAP_SERVERS=127.0.0.1:9092``), the label
repository's ``labelstore.yaml`` (same names, nested: ``kafka: {bootstrap_servers: ...}``), then
the defaults. Relative paths in ``labelstore.yaml`` are relative to the repository, as are the
defaults of the repository's own state (warehouse, catalog, processor data).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

if TYPE_CHECKING:
    from labelstore.repository import Repository

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
        default_factory=dict, description="topic of an entity type's events, if not <entity_type>.events"
    )
    label_versions: str = "labels.versions"
    label_latest: str = "labels.latest"
    dead_letter: str = "events.dlq"
    rules: str = "labels.rules"
    alerts: str = "labels.alerts"

    def events_topic(self, entity_type: str) -> str:
        return self.prefix + self.entity_topics.get(entity_type, f"{entity_type}.events")

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

    @property
    def alerts_topic(self) -> str:
        return self.prefix + self.alerts


class LocalKafkaSettings(_Group):
    """The broker labelstore runs by itself from Maven Central jars."""

    version: str = KAFKA_VERSION
    cache_dir: Path = Field(default_factory=lambda: Path.home() / ".cache" / "labelstore")
    # The machine's broker, not a repository's: `kafka up/down/status` work from any folder.
    state_dir: Path = Field(default_factory=lambda: Path.home() / ".local" / "state" / "labelstore" / "kafka")
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
    max_event_bytes: int = Field(
        default=1_048_576, ge=1_024,
        description="largest event record (key + value) the processor and the archive take; a larger one goes "
                    "to the dead-letter topic (1 MiB: about Kafka's default max.message.bytes, uncompressed)")
    event_time_max_ahead_s: float = Field(
        default=86_400.0, ge=0,
        description="how far an event's time may lie after the broker recorded it; an event time later than "
                    "that, or before 1970-01-01, sends the event to the dead-letter topic")
    shutdown_timeout_s: float = Field(
        default=30.0, gt=0, description="after SIGTERM, exit at the latest this long later, whatever the brokers do")
    stall_timeout_s: float = Field(
        default=120.0, gt=0, description="a worker with events to process or state to recover that makes no "
                                         "progress this long exits (code 71), for its supervisor to restart it")
    metrics: bool = Field(default=True, description="Prometheus metrics on the web port's /metrics")


class WarehouseSettings(_Group):
    """Where the materializer archives events and label versions (Iceberg tables + a DuckDB file)."""

    path: Path = Field(default_factory=lambda: Path("warehouse"))
    catalog_url: str | None = Field(
        default=None, description="the Iceberg catalog: a SQLAlchemy URL (SQL catalog) or an http(s) URL (REST "
                                  "catalog); unset: SQLite in the warehouse folder")
    namespace: str = Field(default="labelstore", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                           description="the catalog namespace of the warehouse's tables")
    flush_records: int = Field(default=100_000, ge=1, description="records buffered before a commit, at most")
    flush_interval_s: float = Field(default=5.0, gt=0, description="longest a record waits for a commit")
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=6067, ge=0, le=65535,
                              description="`labelstore materialize` serves Prometheus metrics here; 0: none")
    shutdown_timeout_s: float = Field(
        default=30.0, gt=0, description="after SIGTERM, exit at the latest this long later, whatever the brokers do")


class RulesSettings(_Group):
    """The rule catalog: any SQLAlchemy URL (PostgreSQL: postgresql+psycopg://user:pass@host/db)."""

    catalog_url: str = "sqlite:///.labelstore/catalog.sqlite"


class SparkSettings(_Group):
    """Where ``engine="spark"`` runs (see ``labelstore.offline.spark``): any Spark master URL."""

    master: str = Field(default="local[*]", description="local[*], spark://host:7077, yarn, k8s://...")
    driver_memory: str = "2g"
    shuffle_partitions: int = Field(default=8, ge=1, description="spark.sql.shuffle.partitions")
    config: dict[str, str] = Field(default_factory=dict, description="more spark.* options, as given")


class DriftThresholds(_Group):
    """When `labelstore monitor` calls a label's distribution shifted (see ``offline.drift``)."""

    psi: float = Field(default=0.2, gt=0, description="population stability index above which it alerts")
    p_value: float = Field(default=0.01, gt=0, lt=1, description="chi-square p-value below which it alerts")
    min_labels: int = Field(default=50, ge=1, description="labels each window needs before drift is judged")


class LabelMonitoring(DriftThresholds):
    """One label's monitoring: its thresholds, and which value counts as positive."""

    positive_value: str | None = Field(
        default=None, description="the value (as text) counted as positive; boolean labels default to true")
    reference_windows: int = Field(default=1, ge=1, description="complete windows before the current one "
                                                               "that make the default reference")


class MonitoringSettings(DriftThresholds):
    """``monitoring:`` in labelstore.yaml: default thresholds, and per label under ``labels``."""

    labels: dict[str, LabelMonitoring] = Field(default_factory=dict)

    def for_label(self, label: str) -> LabelMonitoring:
        """The label's own section, its unset thresholds taken from the defaults above."""
        defaults = self.model_dump(exclude={"labels"})
        own = self.labels.get(label)
        return LabelMonitoring(**{**defaults, **(own.model_dump(exclude_unset=True) if own else {})})


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="LABELSTORE_", env_nested_delimiter="__", frozen=True, extra="forbid"
    )

    project: str = Field(default="labelstore", description="the repository's name")
    repo: Path | None = Field(default=None, description="the label repository's folder (LABELSTORE_REPO)")
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)
    local_kafka: LocalKafkaSettings = Field(default_factory=LocalKafkaSettings)
    processor: ProcessorSettings = Field(default_factory=ProcessorSettings)
    warehouse: WarehouseSettings = Field(default_factory=WarehouseSettings)
    rules: RulesSettings = Field(default_factory=RulesSettings)
    monitoring: MonitoringSettings = Field(default_factory=MonitoringSettings)
    spark: SparkSettings = Field(default_factory=SparkSettings)

    @field_validator("repo")
    @classmethod
    def _absolute(cls, repo: Path | None) -> Path | None:
        return repo.expanduser().resolve() if repo is not None else None

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, _RepositorySource(settings_cls, init_settings), file_secret_settings

    @property
    def repository(self) -> Repository:
        """The label repository these settings came with; raises if there is none."""
        from labelstore.repository import current

        return current(self.repo)

    def to_environment(self) -> dict[str, str]:
        """These settings as ``LABELSTORE_*`` variables, to hand to a child process."""
        environment = {}
        for group, values in self.model_dump(mode="json").items():
            if not isinstance(values, dict):
                if values is not None:
                    environment[f"LABELSTORE_{group.upper()}"] = str(values)
                continue
            for name, value in values.items():
                if value is not None:
                    text = value if isinstance(value, str) else json.dumps(value)
                    environment[f"LABELSTORE_{group.upper()}__{name.upper()}"] = text
        return environment


class _RepositorySource(PydanticBaseSettingsSource):
    """``labelstore.yaml`` of the repository found (explicitly, by LABELSTORE_REPO or upward)."""

    def __init__(self, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource) -> None:
        super().__init__(settings_cls)
        self._explicit = getattr(init_settings, "init_kwargs", {}).get("repo")

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads the whole file at once

    def __call__(self) -> dict[str, Any]:
        from labelstore.repository import locate, read_config

        root = locate(self._explicit)
        if root is None:
            return {}
        values = read_config(root)
        values["repo"] = str(root)
        return _repository_paths(values, root)


def _repository_paths(values: dict[str, Any], root: Path) -> dict[str, Any]:
    """Relative paths of the file, and the defaults of the repository's own state, under its root."""

    def group(name: str) -> dict[str, Any]:
        section = dict(values.get(name) or {})
        values[name] = section
        return section

    state = root / ".labelstore"
    warehouse, processor, rules, local = group("warehouse"), group("processor"), group("rules"), group("local_kafka")
    warehouse["path"] = str(root / warehouse.get("path", "warehouse"))
    processor["data_dir"] = str(root / processor.get("data_dir", state / "processor"))
    for name in ("cache_dir", "state_dir"):
        if name in local:
            local[name] = str(root / Path(local[name]).expanduser())
    url = rules.get("catalog_url", f"sqlite:///{state / 'catalog.sqlite'}")
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////") and url != "sqlite:///:memory:":
        url = f"sqlite:///{root / url.removeprefix('sqlite:///')}"
    rules["catalog_url"] = url
    return {name: section for name, section in values.items() if section != {} or name == "repo"}
