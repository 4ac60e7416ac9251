"""A real worker process on the session broker: labels change as events arrive."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
from confluent_kafka import Producer

from labelstore.events.admin import ensure_topics
from tests.fraud_example import model, example_serializer
from labelstore.events.publisher import Publisher, producer_config
from labelstore.events.reader import read_raw
from labelstore.processors.client import LatestLabelsClient
from labelstore.processors.dead_letters import ERROR_TYPE, SOURCE_OFFSET
from labelstore.processors.latest_view import LatestLabelsView
from tests.conftest import settings_for
from tests.processors.test_core import ADDRESS, classified, created, tagged
from tests.processors.worker_process import WorkerProcess, label_versions, wait_for, with_processor

ManualReviewDecided = model('ManualReviewDecided')
OrderUpdated = model('OrderUpdated')

T1 = datetime(2026, 2, 1, 10, 0, tzinfo=UTC)
STALL_TIMEOUT_S = 8.0


@pytest.fixture(scope="module")
def worker(kafka_cluster, tmp_path_factory):
    directory = tmp_path_factory.mktemp("worker")
    # A short stall timeout: every test of this module would see the worker exit if its watchdog
    # took an idle or a busy worker for a stalled one.
    settings = with_processor(settings_for(kafka_cluster.bootstrap_servers), directory / "data",
                              stall_timeout_s=STALL_TIMEOUT_S)
    ensure_topics(settings)
    process = WorkerProcess(settings, directory / "worker.log").start()
    yield process
    process.stop()


@pytest.fixture
def publish(worker):
    publisher = Publisher(worker.settings)
    yield publisher.publish_many
    publisher.close()


def versions_of(worker, entity_id, count, timeout=60):
    def found():
        versions = [v for v in label_versions(worker.settings) if v.entity_id == entity_id]
        return versions if len(versions) >= count else None

    return wait_for(found, timeout=timeout, worker=worker)


def unique(name):
    return f"{name}-{uuid4().hex[:8]}"


def test_seed_timeline_gives_exactly_the_expected_versions(worker, publish):
    order = unique("order")
    events = [created(order, T1), classified(order, T1 + timedelta(minutes=1), "NOT_FRAUD"),
              OrderUpdated(entity_id=order, event_time=T1 + timedelta(hours=2), source="checkout",
                           payload={"shipping_address": {**ADDRESS, "country": "GB"}}),
              classified(order, T1 + timedelta(hours=3), "FRAUD")]
    reports = publish(events)
    versions = versions_of(worker, order, 2, timeout=90)  # the first test also waits for the group to form
    assert [(v.label, v.previous_value, v.value) for v in versions] == [
        ("fraud", None, "negative"), ("fraud", "negative", "positive")]
    assert [v.caused_by.event_id for v in versions] == [events[1].event_id, events[3].event_id]
    assert [v.caused_by.offset for v in versions] == [reports[1].offset, reports[3].offset]
    assert [v.recorded_at for v in versions] == [reports[1].recorded_at_ms, reports[3].recorded_at_ms]
    assert versions[1].event_time == int((T1 + timedelta(hours=3)).timestamp() * 1000)
    assert all(v.rule_version == 1 for v in versions)


def test_false_negative_tag_flips_negative_to_positive(worker, publish):
    order = unique("order")
    publish([created(order, T1), classified(order, T1, "NOT_FRAUD"),
             tagged(order, T1 + timedelta(days=12), "false-negative")])
    versions = versions_of(worker, order, 2)
    assert [(v.previous_value, v.value) for v in versions] == [(None, "negative"), ("negative", "positive")]


def test_abstaining_rule_emits_nothing_and_separate_batches_continue_the_state(worker, publish):
    order = unique("order")
    publish([created(order, T1), tagged(order, T1, "vip")])
    client = LatestLabelsClient(worker.url)
    wait_for(lambda: client.labels("order", order) is not None, timeout=60, worker=worker)
    assert client.labels("order", order) == {}  # seen, but every rule abstained
    publish([tagged(order, T1 + timedelta(hours=1), "false-negative")])
    publish([classified(order, T1 + timedelta(hours=2), "NOT_FRAUD")])  # a later batch: tags kept
    versions = versions_of(worker, order, 1)
    assert [(v.label, v.value) for v in versions] == [("fraud", "positive")]


def test_two_labels_on_one_entity(worker, publish):
    order = unique("order")
    publish([created(order, T1), classified(order, T1, "FRAUD"),
             ManualReviewDecided(entity_id=order, event_time=T1 + timedelta(days=1), source="review-desk",
                                 payload={"decision": "APPROVE", "reviewer": "r1"})])
    versions = versions_of(worker, order, 2)
    assert {(v.label, v.value) for v in versions} == {("fraud", "positive"), ("manual_review", "negative")}
    labels = wait_for(lambda: (LatestLabelsClient(worker.url).labels("order", order) or {}).get("manual_review") and
                      LatestLabelsClient(worker.url).labels("order", order), timeout=30, worker=worker)
    assert labels["fraud"]["value"] == "positive" and labels["manual_review"]["value"] == "negative"
    assert labels["fraud"]["caused_by"]["event_id"] == str(versions[0].caused_by.event_id)


def test_latest_topic_and_endpoint_agree(worker, publish):
    order = unique("order")
    publish([created(order, T1), classified(order, T1, "NOT_FRAUD"), classified(order, T1, "FRAUD")])
    versions = versions_of(worker, order, 2)
    latest = [value for key, value, *_ in read_raw(worker.settings, worker.settings.topics.label_latest_topic)
              if key == f"order/fraud/{order}".encode()]
    assert latest[-1] == versions[-1].to_json()
    assert LatestLabelsClient(worker.url).value("order", order, "fraud") == "positive"
    assert LatestLabelsClient(worker.url).labels("order", unique("never-seen")) is None

    view = LatestLabelsView(worker.settings)
    view.catch_up()
    assert view.get("order", order, "fraud") == versions[-1]
    assert not view.apply(versions[-1])  # a duplicate changes nothing
    assert not view.apply(versions[0])  # nor does an older version replayed late
    assert view.get("order", order, "fraud").value == "positive"


def test_malformed_messages_go_to_the_dead_letter_topic_and_good_ones_are_labelled(worker, publish):
    settings = worker.settings
    topic = settings.topics.events_topic("order")
    orders = [unique("order") for _ in range(5)]
    raw = Producer(producer_config(settings))
    bad = [(b"x1", b"not avro at all"), (b"x2", b"\xc3\x01" + bytes(8)), (None, b"\xc3\x01"), (b"x4", b"")]

    serializer = example_serializer()
    good_event = classified(orders[0], T1, "FRAUD")
    wrong_key = (b"someone-else", serializer.encode(good_event))
    for index, order in enumerate(orders):
        for event in (created(order, T1), classified(order, T1, "FRAUD")):
            raw.produce(topic, key=order.encode(), value=serializer.encode(event))
        if index < len(bad):
            raw.produce(topic, key=bad[index][0], value=bad[index][1])
    raw.produce(topic, key=wrong_key[0], value=wrong_key[1])
    assert raw.flush(30) == 0

    for order in orders:
        assert [v.value for v in versions_of(worker, order, 1)] == ["positive"]
    dead = wait_for(lambda: (d := list(read_raw(settings, settings.topics.dead_letter_topic))) and len(d) >= 5 and d,
                    timeout=30, worker=worker)
    assert len(dead) == 5
    assert sorted(value for _, value, *_ in dead) == sorted(
        [b"not avro at all", b"\xc3\x01" + bytes(8), b"\xc3\x01", b"", wrong_key[1]])
    reasons = sorted(dict(headers)[ERROR_TYPE].decode() for *_, headers in dead)
    assert reasons == ["CorruptMessageError", "CorruptMessageError", "UnknownSchemaError", "key-mismatch", "missing-key"]
    assert all(int(dict(headers)[SOURCE_OFFSET]) >= 0 for *_, headers in dead)


def test_a_worker_prints_its_threads_stacks_on_sigquit_and_keeps_running(worker):
    import signal
    import time

    before = worker.log_path.stat().st_size
    worker.process.send_signal(signal.SIGQUIT)
    wait_for(lambda: b"Thread 0x" in worker.log_path.read_bytes()[before:], timeout=10, worker=worker)
    time.sleep(1)
    worker.assert_alive()
    assert b"most recent call first" in worker.log_path.read_bytes()[before:]


def get_json(url):
    import json
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def answers_ready(worker) -> bool:
    import urllib.error

    try:
        return get_json(f"{worker.url}/readyz")[0] == 200
    except urllib.error.URLError:  # Faust serves its pages once the state is first recovered
        return False


def test_ready_healthy_and_status_pages(worker, publish):
    wait_for(lambda: answers_ready(worker), timeout=60, worker=worker)
    status, ready = get_json(f"{worker.url}/readyz")
    topics = worker.settings.topics
    partitions = worker.settings.kafka.partitions
    assert ready["ready"] and not ready["recovering"]
    assert set(ready["assigned"]) == {f"{topics.events_topic(e)}/{p}" for e in ("order", "content") for p in range(partitions)}

    status, health = get_json(f"{worker.url}/healthz")
    assert status == 200 and health["status"] == "ok" and health["stall_timeout_s"] == STALL_TIMEOUT_S

    order = unique("ord")
    publish([created(order, T1), classified(order, T1 + timedelta(minutes=1), "FRAUD")])
    versions_of(worker, order, 1)
    status, report = get_json(f"{worker.url}/status")
    assert status == 200 and report["healthy"] and report["ready"]
    assert report["processed"]["order.events"] >= 2
    assert report["consumer"]["flow_active"] and report["consumer"]["recovery"]["completed"]
    assert report["health"]["seconds_since_progress"] < STALL_TIMEOUT_S


def test_an_idle_worker_is_not_taken_for_a_stalled_one(worker, publish):
    import time

    order = unique("ord")
    publish([created(order, T1)])
    time.sleep(STALL_TIMEOUT_S + 2 * 5.0)  # longer than the stall timeout, with two checks of the lag
    worker.assert_alive()
    assert get_json(f"{worker.url}/healthz")[0] == 200


def test_a_worker_logs_its_consumer_state_on_sigusr2(worker):
    import signal

    before = worker.log_path.stat().st_size
    worker.process.send_signal(signal.SIGUSR2)
    wait_for(lambda: b"consumer state on SIGUSR2" in worker.log_path.read_bytes()[before:], timeout=10, worker=worker)
    logged = worker.log_path.read_bytes()[before:].decode(errors="replace")
    assert '"flow_active": true' in logged and '"recovery"' in logged
    worker.assert_alive()


def test_status_shows_lag_owners_and_each_workers_progress(worker, publish, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from labelstore.cli import app as cli
    from labelstore.materializers.materializer import Materializer
    from labelstore.settings import WarehouseSettings
    from labelstore.status import materializer_status, processor_status

    order = unique("ord")
    publish([created(order, T1), classified(order, T1 + timedelta(minutes=1), "FRAUD")])
    versions_of(worker, order, 1)
    topics, partitions = worker.settings.topics, worker.settings.kafka.partitions

    def caught_up():
        report = processor_status(worker.settings)
        return report if report.lag == 0 and report.members and report.members[0].status else None

    processor = wait_for(caught_up, timeout=30, worker=worker)  # offsets are committed every few seconds
    assert len(processor.members) == 1 and processor.state == "stable"
    member = processor.members[0]
    assert member.client_id == f"labelstore-processor@127.0.0.1:{worker.settings.processor.web_port}"
    assert len(member.partitions) == 2 * partitions
    assert member.status["ready"] and member.status["healthy"]
    assert {p.owner for p in processor.partitions} == {member.client_id}
    assert sum(p.end for p in processor.partitions if p.topic == topics.events_topic("order")) >= 2

    settings = worker.settings.model_copy(update={"warehouse": WarehouseSettings(path=tmp_path / "warehouse")})
    behind = materializer_status(settings)
    assert behind.last_progress_at is None and behind.lag == sum(p.end for p in behind.partitions) > 0
    Materializer(settings).run(until_caught_up=True)
    archived = materializer_status(settings)
    assert archived.lag == 0 and archived.last_progress_at is not None

    monkeypatch.setattr("os.environ", {**__import__("os").environ, **settings.to_environment()})
    printed = CliRunner().invoke(cli, ["status"])
    assert printed.exit_code == 0, printed.output
    assert "processor: lag 0, group stable" in printed.output and "materializer: lag 0" in printed.output
    printed = CliRunner().invoke(cli, ["status", "--json"])
    processor_json, materializer_json = __import__("json").loads(printed.output)
    assert [m["client_id"] for m in processor_json["members"]] == [member.client_id]
    assert processor_json["lag"] == 0 and materializer_json["lag"] == 0
