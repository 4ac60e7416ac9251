"""The warehouse's Iceberg catalog on PostgreSQL: the same archive, found through the catalog URL."""

from __future__ import annotations

import pytest

from labelstore.materializers.materializer import Materializer
from labelstore.warehouse import Warehouse
from tests.materializers.test_materializer import demo_records, produce, with_warehouse


@pytest.fixture(scope="module")
def postgres():
    from tests.postgres import PostgresServer

    server = PostgresServer().start()
    yield server
    server.stop()


def test_the_archive_in_a_postgresql_catalog(settings, tmp_path, postgres):
    records = demo_records(20, 5)
    produce(settings, settings.topics.events_topic("order"), records["order"])
    produce(settings, settings.topics.events_topic("content"), records["content"])
    settings = with_warehouse(settings, tmp_path / "warehouse", catalog_url=postgres.url,
                              namespace=settings.topics.prefix.strip(".").replace("-", "_"))
    stats = Materializer(settings).run(until_caught_up=True)
    assert stats.records == len(records["order"]) + len(records["content"])

    found = Warehouse.of(settings)
    assert found.connect().execute("SELECT count(*) FROM events").fetchone() == (stats.records,)
    assert sum(found.offsets()[settings.topics.events_topic("order")].values()) == len(records["order"])
    assert not (settings.warehouse.path / "catalog.sqlite").exists()  # the tables are in PostgreSQL's catalog
    # Without the URL the folder holds no tables of its own: nothing is read by mistake.
    assert Warehouse(settings.warehouse.path).last_commit() is None
    assert Materializer(settings).run(until_caught_up=True).records == 0
