"""A broker that dies mid-publish: every event is either acknowledged or reported failed."""

from __future__ import annotations

import itertools
import threading

import pytest

from labelstore.events.admin import ensure_topics
from tests.fraud_example import generate, example_serializer
from labelstore.events.exceptions import PublishError
from labelstore.events.publisher import Publisher
from labelstore.events.reader import read_raw
from labelstore.settings import LocalKafkaSettings
from tests.conftest import settings_for

pytestmark = pytest.mark.fault


@pytest.fixture
def own_broker(tmp_path):
    """A broker of this test's own: the session broker must survive for the other tests."""
    from labelstore.localkafka import LocalKafkaCluster

    cluster = LocalKafkaCluster(LocalKafkaSettings(), nodes=1, data_dir=tmp_path / "kafka")
    cluster.start()
    yield cluster
    cluster.stop()


def test_broker_killed_mid_publish_fails_loudly_and_loses_nothing(own_broker):
    settings = settings_for(own_broker.bootstrap_servers, delivery_timeout_ms=5_000)
    ensure_topics(settings)
    events = list(itertools.islice(generate(60_000, 0, seed=2), 120_000))
    publisher = Publisher(settings)
    publisher.publish_many(events[:1_000])  # the broker is healthy

    killer = threading.Timer(0.3, own_broker.stop_node, args=(0,), kwargs={"kill": True})
    killer.start()
    with pytest.raises(PublishError) as raised:
        publisher.publish_many(events[1_000:], timeout=60)
    killer.join()

    error = raised.value
    batch_ids = {event.event_id for event in events[1_000:]}
    delivered_ids = {report.event_id for report in error.delivered}
    failed_ids = {failure.event_id for failure in error.failures}
    assert failed_ids, "the broker died: some events must be reported failed"
    assert delivered_ids | failed_ids == batch_ids and not delivered_ids & failed_ids
    assert "timed out" in str(error).lower()

    # Acknowledged means durable: after a restart, every acknowledged event is in the log.
    own_broker.start_node(0)

    serializer = example_serializer()
    logged = {serializer.decode(value).event_id
              for _, value, *_ in read_raw(settings, settings.topics.events_topic("order"))}
    assert delivered_ids <= logged
    assert logged <= batch_ids | {event.event_id for event in events[:1_000]}
    publisher.close()
    print(f"\nbroker killed mid-publish: {len(delivered_ids)} acknowledged, {len(failed_ids)} reported failed, "
          f"{len(logged) - 1_000} in the log after restart")


def test_a_failure_after_a_timed_out_flush_is_raised_by_the_next_flush():
    from labelstore.localkafka.cluster import free_port

    settings = settings_for(f"127.0.0.1:{free_port()}")  # nobody listens there
    event = next(iter(generate(1, 0, seed=1)))
    publisher = Publisher(settings, producer_overrides={"delivery.timeout.ms": 1_500})
    future = publisher.publish(event)
    with pytest.raises(PublishError, match="still undelivered"):
        publisher.flush(timeout=0.1)
    with pytest.raises(PublishError) as failed:
        publisher.flush(timeout=30)  # the event timed out meanwhile: its failure is this flush's
    assert [f.event_id for f in failed.value.failures] == [event.event_id]
    assert isinstance(future.exception(timeout=1), PublishError)
    publisher.close(timeout=5)
