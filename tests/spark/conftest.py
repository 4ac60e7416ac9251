"""One SparkSession for the whole test session: local[2], few shuffle partitions, no UI."""

from __future__ import annotations

import pytest

from labelstore.settings import SparkSettings


@pytest.fixture(scope="session")
def spark():
    from labelstore.offline.spark.session import spark_session

    session = spark_session(SparkSettings(master="local[2]", shuffle_partitions=4, driver_memory="2g",
                                          config={"spark.ui.enabled": "false"}))
    yield session
    session.stop()
