"""One real Kafka broker per test session; every test gets its own topics.

The tests run on the fraud example repository (examples/fraud) unless a test makes its own:
LABELSTORE_REPO points there for this process and the workers it starts.
"""

from __future__ import annotations

import gc
import os
from pathlib import Path
from uuid import uuid4

import pytest

from labelstore.settings import KafkaSettings, LocalKafkaSettings, Settings, TopicSettings

EXAMPLE_REPOSITORY = Path(__file__).resolve().parent.parent / "examples" / "fraud"
os.environ["LABELSTORE_REPO"] = str(EXAMPLE_REPOSITORY)


@pytest.fixture(scope="session")
def kafka_cluster(tmp_path_factory):
    from labelstore.localkafka import LocalKafkaCluster

    cluster = LocalKafkaCluster(LocalKafkaSettings(), nodes=1, data_dir=tmp_path_factory.mktemp("kafka"))
    cluster.start()
    yield cluster
    gc.collect()  # close lingering clients first, or they log connection errors after the summary
    cluster.stop()


def settings_for(bootstrap_servers: str, **kafka: object) -> Settings:
    """Settings for a test: its own topic prefix, so tests never see each other's records."""
    return Settings(
        kafka=KafkaSettings(bootstrap_servers=bootstrap_servers, **kafka),
        topics=TopicSettings(prefix=f"t{uuid4().hex[:10]}."),
    )


@pytest.fixture
def settings(kafka_cluster) -> Settings:
    from labelstore.events.admin import ensure_topics

    test_settings = settings_for(kafka_cluster.bootstrap_servers)
    ensure_topics(test_settings)
    return test_settings
