"""The RocksDB store option (rocksdict): a worker keeps entity state on disk and across restarts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import uuid4

from aiokafka.partitioner import murmur2
from rocksdict import AccessType, Options, Rdict

from labelstore.events.admin import ensure_topics
from labelstore.events.publisher import Publisher
from labelstore.processors.client import LatestLabelsClient, ProcessorNotReadyError
from labelstore.processors.core import decode_record
from labelstore.processors.refold import uninterrupted_versions
from tests.conftest import settings_for
from tests.processors.test_core import classified, created, tagged
from tests.processors.test_scale_out import chaos_checks, readiness
from tests.processors.worker_process import WorkerProcess, free_port, label_versions, wait_for, with_processor

T1 = datetime(2026, 5, 1, tzinfo=UTC)


def fraud_label(client: LatestLabelsClient, order: str):
    try:
        return client.value("order", order, "fraud")
    except (OSError, ProcessorNotReadyError):  # the worker is still starting
        return None


def stored_records(data_dir: Path, key: bytes) -> dict[int, dict]:
    """The entity-state records of ``key`` in each order-state partition database, read from disk."""
    found = {}
    databases = sorted(data_dir.glob("worker-*/v*/tables/order-state-*.db"))
    assert len(databases) == 6, databases
    for path in databases:
        db = Rdict(str(path), options=Options(raw_mode=True), access_type=AccessType.read_only())
        try:
            value = db.get(key)
        finally:
            db.close()
        if value is not None:
            found[int(path.stem.rsplit("-", 1)[1])] = decode_record(value)
    return found


def test_a_rocksdb_worker_keeps_state_across_a_restart(kafka_cluster, tmp_path):
    settings = with_processor(settings_for(kafka_cluster.bootstrap_servers), tmp_path / "data", store="rocksdb://")
    ensure_topics(settings)
    order = f"order-{uuid4().hex[:8]}"
    worker = WorkerProcess(settings, tmp_path / "worker-1.log").start()
    try:
        with Publisher(settings) as publisher:
            publisher.publish_many([created(order, T1), classified(order, T1, "NOT_FRAUD")])
        client = LatestLabelsClient(worker.url)
        wait_for(lambda: fraud_label(client, order) == "negative", timeout=90, worker=worker)
    finally:
        worker.stop()
    # The stopped worker left the entity's record on disk, in the database of the key's partition.
    on_disk = stored_records(tmp_path / "data", order.encode())
    partition = (murmur2(order.encode()) & 0x7FFFFFFF) % settings.kafka.partitions
    assert list(on_disk) == [partition], on_disk
    assert on_disk[partition]["state"]["classification"] == "NOT_FRAUD"
    assert on_disk[partition]["labels"]["fraud"]["value"] == "negative"

    worker = WorkerProcess(settings, tmp_path / "worker-2.log").start()
    try:
        with Publisher(settings) as publisher:
            # Only the tag arrives now: the label needs the classification kept from before.
            publisher.publish_many([tagged(order, T1 + timedelta(days=2), "false-negative")])
        client = LatestLabelsClient(worker.url)
        wait_for(lambda: fraud_label(client, order) == "positive", timeout=90, worker=worker)
    finally:
        worker.stop()
    versions = [(v.previous_value, v.value) for v in label_versions(settings) if v.entity_id == order]
    assert versions == [(None, "negative"), ("negative", "positive")]


def test_a_promoted_rocksdb_standby_holds_every_state_of_the_changelogs_it_read(kafka_cluster, tmp_path):
    """A RocksDB standby saves the offset of each changelog batch it applies, and promoted it
    recovers from there: a changelog record dropped on its way to it while later ones were applied
    would be missing for good. Faust clears the changelog queue when a recovery completes, standby
    records among them; worker B joins while A's changelogs are long, so it may still be reading
    them as a standby when its recovery completes, then takes them over when A stops. Every
    entity's state on B must be that of an uninterrupted re-fold. No event comes after B joins: a
    later state record of an entity would hide the loss of an earlier one. Whether standby records
    are queued at that moment is up to timing: this checks the outcome, it does not force the drop
    (``test_transport.py`` does)."""
    settings = with_processor(settings_for(kafka_cluster.bootstrap_servers), tmp_path / "data", store="rocksdb://")
    ensure_topics(settings)
    second = settings.model_copy(update={"processor": settings.processor.model_copy(update={"web_port": free_port()})})
    orders = [f"order-{uuid4().hex[:8]}" for _ in range(3000)]
    first, joining = WorkerProcess(settings, tmp_path / "a.log").start(), WorkerProcess(second, tmp_path / "b.log")
    everything = settings.kafka.partitions * len(settings.repository.entity_types)
    try:
        with Publisher(settings) as publisher:
            publisher.publish_many([e for order in orders for e in (created(order, T1), classified(order, T1, "NOT_FRAUD"))])
        wait_for(lambda: len(label_versions(settings)) >= len(orders), timeout=120, worker=first)
        joining.start()
        wait_for(lambda: (held := readiness(joining)) and len(held) < everything, timeout=90, worker=joining)
        first.stop()
        wait_for(lambda: (held := readiness(joining)) and len(held) == everything, timeout=90, worker=joining)
        expected = uninterrupted_versions(settings)
        checked, wrong, examples = chaos_checks.endpoint_mismatches(
            [joining.url], chaos_checks.last_versions(expected), sample=len(orders), seed=1, settle_s=20)
        assert checked == len(orders) and wrong == 0, examples
    finally:
        first.stop()
        joining.stop()
