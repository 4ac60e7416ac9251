"""The warehouse's Iceberg catalog away from the data: PostgreSQL (a SQL catalog) and an Iceberg
REST catalog server. The same archive, found through the catalog URL: resumed from its snapshots'
offsets, answering as-of queries as the default SQLite catalog does, and pinning the Iceberg
snapshots a training snapshot read."""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime

import pyarrow.parquet as pq
import pytest

from labelstore.materializers.materializer import Materializer
from labelstore.offline.asof import as_of
from labelstore.offline.snapshot import reread, snapshot
from labelstore.warehouse import Warehouse
from tests.materializers.test_materializer import a_version, demo_records, produce, with_warehouse

SECOND = 1_000


@pytest.fixture(scope="module", params=["postgresql", "rest"])
def catalog_url(request):
    if request.param == "postgresql":
        from tests.postgres import PostgresServer as Server
    else:
        from tests.iceberg_rest import IcebergRestServer as Server
    server = Server().start()
    yield server.url
    server.stop()


def verdict(entity_id: str, value: str, *, recorded_at_ms: int, offset: int):
    """A fraud label version, recorded at the given time, 5 s after its event happened."""
    return dataclasses.replace(a_version(entity_id, value, offset), event_time=recorded_at_ms - 5 * SECOND,
                               recorded_at=recorded_at_ms)


def versions_before(now_ms: int) -> list:
    """Fraud verdicts recorded in the last minute: order-a negative then positive, order-b positive,
    order-c negative; order-b's once more (a processor re-emits a version after a crash)."""
    verdicts = [verdict(entity_id, value, recorded_at_ms=now_ms - seconds_ago * SECOND, offset=offset)
                for offset, (entity_id, value, seconds_ago) in enumerate(
                    [("order-a", "negative", 50), ("order-b", "positive", 40), ("order-a", "positive", 20),
                     ("order-c", "negative", 10)])]
    return [*verdicts, verdicts[1]]


def ago(now_ms: int, seconds: int) -> datetime:
    return datetime.fromtimestamp((now_ms - seconds * SECOND) / 1000, UTC)


def produce_versions(settings, versions) -> None:
    produce(settings, settings.topics.label_versions_topic, [(v.entity_id.encode(), v.to_json()) for v in versions])


def test_the_archive_in_a_catalog_of_its_own(settings, tmp_path, catalog_url):
    # 1. Events and label versions, archived through the catalog at the URL.
    records = demo_records(20, 5)
    produce(settings, settings.topics.events_topic("order"), records["order"])
    produce(settings, settings.topics.events_topic("content"), records["content"])
    now_ms = int(time.time() * 1000)
    versions = versions_before(now_ms)
    produce_versions(settings, versions)
    local = with_warehouse(settings, tmp_path / "local")  # the default SQLite catalog, beside the data
    settings = with_warehouse(settings, tmp_path / "warehouse", catalog_url=catalog_url,
                              namespace=settings.topics.prefix.strip(".").replace("-", "_"))
    stats = Materializer(settings).run(until_caught_up=True)
    events = len(records["order"]) + len(records["content"])
    assert stats.records == events + len(versions)

    found = Warehouse.of(settings)
    assert found.connect().execute("SELECT count(*) FROM events").fetchone() == (events,)
    assert found.connect().execute("SELECT count(*) FROM labels").fetchone() == (len(versions) - 1,)
    assert sum(found.offsets()[settings.topics.events_topic("order")].values()) == len(records["order"])
    assert not (settings.warehouse.path / "catalog.sqlite").exists()  # the tables are in the catalog's database
    # Without the URL the folder holds no tables of its own: nothing is read by mistake.
    assert Warehouse(settings.warehouse.path).last_commit() is None

    # 2. A restarted materializer resumes from the snapshots' offsets: nothing twice, the new once.
    assert Materializer(settings).run(until_caught_up=True).records == 0
    produce(settings, settings.topics.events_topic("order"), records["order"][:10])
    assert Materializer(settings).run(until_caught_up=True).records == 10
    events += 10
    assert found.connect().execute('SELECT count(*), count(DISTINCT (topic, "partition", "offset")) FROM events'
                                   ).fetchone() == (events, events)

    # 3. As-of answers are those of the same records archived in the default catalog.
    Materializer(local).run(until_caught_up=True)
    beside = Warehouse.of(local)
    for when in [{}, {"known_at": ago(now_ms, 30)}, {"known_at": ago(now_ms, 15)},
                 {"valid_at": ago(now_ms, 30)}]:
        answer = as_of(found, "fraud", **when)
        assert answer.equals(as_of(beside, "fraud", **when)), when
    assert dict(zip(*as_of(found, "fraud").select(["entity_id", "value"]).to_pydict().values())) == {
        "order-a": "positive", "order-b": "positive", "order-c": "negative"}

    # 4. A training snapshot pins the Iceberg snapshots it read, tagged through the catalog; re-read
    # by those ids after more records are archived, it gives the same rows.
    manifest = snapshot(found, "train", ["fraud"], known_at=ago(now_ms, 15))
    assert manifest["rows"] == 2  # order-a positive, order-b positive; order-c came later
    produce(settings, settings.topics.events_topic("content"), records["content"][:3])
    produce_versions(settings, [verdict("order-b", "negative", recorded_at_ms=now_ms, offset=9)])
    assert Materializer(settings).run(until_caught_up=True).records == 4
    for dataset, snapshot_id in manifest["iceberg_snapshots"].items():
        table = found.table(dataset)
        assert table.current_snapshot().snapshot_id != snapshot_id
        assert table.metadata.refs[manifest["iceberg_tag"]].snapshot_id == snapshot_id
    count = "SELECT count(*) FROM events"
    then = found.at(manifest["iceberg_snapshots"]).connect().execute(count).fetchone()[0]
    assert then == found.connect().execute(count).fetchone()[0] - 3
    assert reread(found, "train").equals(pq.read_table(found.snapshots_dir / "train" / "labels.parquet"))
