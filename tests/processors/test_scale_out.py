"""Scaling out and back in on a three-node cluster: partitions and their state move, nothing is lost.

One worker, then a second and a third join while events keep arriving; then one is stopped
(SIGTERM) and another killed (SIGKILL). After every rebalance each event partition has exactly
one owner, and every worker that received partitions is ready (its state recovered from the
changelog). Probe orders, one per partition, take a step after each rebalance whose label depends
on the state folded before it: a new owner that had not recovered that state would emit nothing
or the wrong previous value. At the end the label versions, deduplicated by ``version_id``, equal
an uninterrupted re-fold of the same log (``processors.refold``), and every worker's endpoint
answers each entity's last version. A worker that exits by itself fails the test with its log:
no supervisor restarts it here.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import sys
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.error import URLError
from urllib.request import urlopen

import pytest
from aiokafka.partitioner import murmur2
from confluent_kafka import ConsumerGroupTopicPartitions, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from labelstore.events.admin import ensure_topics
from labelstore.events.publisher import Publisher
from labelstore.localkafka import LocalKafkaCluster
from labelstore.localkafka.cluster import free_port
from labelstore.processors.refold import uninterrupted_versions
from labelstore.settings import LocalKafkaSettings, Settings
from tests.conftest import settings_for
from tests.fraud_example import generate
from tests.processors.test_core import classified, created, tagged
from tests.processors.worker_process import WorkerProcess, label_versions, wait_for, with_processor

pytestmark = pytest.mark.fault

BENCH = Path(__file__).resolve().parents[2] / "bench"
_spec = importlib.util.spec_from_file_location("chaos_checks", BENCH / "chaos_checks.py")
chaos_checks = sys.modules.setdefault("chaos_checks", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(chaos_checks)  # the chaos harness's checks: lost, extra, different, endpoint

T1 = datetime(2026, 3, 1, tzinfo=UTC)
RATE = 150  # events/s published while the workers come and go
BACKLOG = 15_000  # events published before the first worker starts
# A probe's step after each rebalance: its event, and the (previous, new) fraud label it must cause.
PROBE_STEPS = [
    (lambda order, t: tagged(order, t, "false-negative"), ("negative", "positive")),
    (lambda order, t: tagged(order, t, "false-negative", untag=True), ("positive", "negative")),
    (lambda order, t: classified(order, t, "FRAUD"), ("negative", "positive")),
    (lambda order, t: classified(order, t, "NOT_FRAUD"), ("positive", "negative")),
    (lambda order, t: tagged(order, t, "false-negative"), ("negative", "positive")),
]


@pytest.fixture(scope="module")
def cluster3(tmp_path_factory):
    with LocalKafkaCluster(LocalKafkaSettings(), nodes=3, data_dir=tmp_path_factory.mktemp("kafka3")) as cluster:
        yield cluster


class SteadyEvents(threading.Thread):
    """Publishes ``rate`` events a second through the SDK until stopped."""

    def __init__(self, settings: Settings, events, rate: int) -> None:
        super().__init__(name="steady-events", daemon=True)
        self.settings, self.events, self.rate = settings, events, rate
        self.published = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        with Publisher(self.settings, source="scale-out") as publisher:
            while not self.stopping.wait(0.2):
                chunk = list(itertools.islice(self.events, self.rate // 5))
                publisher.publish_many(chunk)
                self.published += len(chunk)

    def stop(self) -> None:
        self.stopping.set()
        self.join(60)


class Fleet:
    """The workers of one consumer group, each on its own web port."""

    def __init__(self, settings: Settings, log_dir: Path) -> None:
        self.settings, self.log_dir = settings, log_dir
        self.workers: list[WorkerProcess] = []
        self.retired: set[WorkerProcess] = set()  # stopped or killed on purpose

    def add(self) -> WorkerProcess:
        processor = self.settings.processor.model_copy(update={"web_port": free_port()})
        worker = WorkerProcess(self.settings.model_copy(update={"processor": processor}),
                               self.log_dir / f"worker-{len(self.workers) + 1}.log")
        self.workers.append(worker.start())
        return worker

    def alive(self) -> list[WorkerProcess]:
        return [w for w in self.workers if w.process is not None and w.process.poll() is None]

    def retire(self, worker: WorkerProcess, *, kill: bool = False) -> None:
        self.retired.add(worker)
        if kill:
            worker.kill()
        else:
            worker.stop()

    def restart(self, worker: WorkerProcess) -> None:
        self.retired.discard(worker)
        worker.start()

    def assert_none_died(self) -> None:
        """A worker that exits by itself is a failure here, whatever a supervisor would do next."""
        for worker in self.workers:
            if worker not in self.retired:
                worker.assert_alive()

    def explain(self) -> None:
        for worker in self.alive():
            worker.explain()

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()


def event_partitions(settings: Settings) -> set[tuple[str, int]]:
    return {(settings.topics.events_topic(e), p) for e in settings.repository.entity_types
            for p in range(settings.kafka.partitions)}


def group_id(settings: Settings) -> str:
    return settings.topics.prefix + settings.processor.app_id


def group_assignments(settings: Settings) -> list[set[tuple[str, int]]]:
    """Each member's event partitions, as the group coordinator has them."""
    admin = AdminClient({"bootstrap.servers": settings.kafka.bootstrap_servers})
    description = admin.describe_consumer_groups([group_id(settings)])[group_id(settings)].result(30)
    wanted = event_partitions(settings)
    return [{(tp.topic, tp.partition) for tp in m.assignment.topic_partitions} & wanted for m in description.members]


def readiness(worker: WorkerProcess) -> set[tuple[str, int]] | None:
    """The worker's event partitions once its /readyz says 200 (state recovered), else None."""
    try:
        with urlopen(f"{worker.url}/readyz", timeout=5) as response:  # a 503 raises HTTPError, a URLError
            report = json.load(response)
    except (URLError, OSError):
        return None  # not ready, or not serving yet: Faust serves its pages once the state is first recovered
    return {(where.rsplit("/", 1)[0], int(where.rsplit("/", 1)[1])) for where in report["assigned"]}


def settled(settings: Settings, fleet: Fleet) -> dict[WorkerProcess, set[tuple[str, int]]] | None:
    """Each live worker's partitions once the group has one member per live worker, every event
    partition has exactly one owner, and every worker is ready and owns what the coordinator says."""
    fleet.assert_none_died()
    try:
        members = group_assignments(settings)
    except KafkaException as exc:  # the coordinator is not known or loading yet (a three-node cluster)
        if not exc.args[0].retriable() and exc.args[0].code() not in (KafkaError.NOT_COORDINATOR,
                                                                      KafkaError.COORDINATOR_LOAD_IN_PROGRESS):
            raise
        return None
    owners = Counter(tp for member in members for tp in member)
    if len(members) != len(fleet.alive()) or set(owners) != event_partitions(settings) or max(owners.values()) > 1:
        return None
    held = {worker: readiness(worker) for worker in fleet.alive()}
    if any(partitions is None for partitions in held.values()):
        return None
    if sorted(map(sorted, held.values())) != sorted(map(sorted, members)):
        return None  # a worker still reports the previous generation
    return held


def wait_settled(settings: Settings, fleet: Fleet, timeout: float = 90) -> dict[WorkerProcess, set]:
    try:
        return wait_for(lambda: settled(settings, fleet), timeout=timeout, interval=1)
    except AssertionError:
        fleet.explain()
        raise


def probe_orders(partitions: int) -> dict[int, str]:
    """An order id per partition of the order events topic (the murmur2 choice of its key)."""
    probes: dict[int, str] = {}
    for number in itertools.count():
        order = f"probe-{number:03d}"
        probes.setdefault((murmur2(order.encode()) & 0x7FFFFFFF) % partitions, order)
        if len(probes) == partitions:
            return probes


class Probes:
    """Orders whose next label depends on the state folded before each rebalance."""

    def __init__(self, settings: Settings, fleet: Fleet) -> None:
        self.settings, self.fleet = settings, fleet
        self.orders = probe_orders(settings.kafka.partitions)
        self.step = 0

    def begin(self) -> None:
        with Publisher(self.settings, source="probe") as publisher:
            publisher.publish_many([e for order in self.orders.values()
                                    for e in (created(order, T1), classified(order, T1, "NOT_FRAUD"))])
        self._wait_for(T1, (None, "negative"))

    def next_step(self) -> None:
        """Publish the next step for every probe; wait for each one's expected version."""
        event, change = PROBE_STEPS[self.step]
        self.step += 1
        at = T1 + timedelta(minutes=self.step)
        with Publisher(self.settings, source="probe") as publisher:
            publisher.publish_many([event(order, at) for order in self.orders.values()])
        self._wait_for(at, change)

    def _wait_for(self, at: datetime, change: tuple[str | None, str]) -> None:
        at_ms = int(at.timestamp() * 1000)

        def arrived() -> bool:
            self.fleet.assert_none_died()
            seen = {(v.entity_id, v.previous_value, v.value) for v in label_versions(self.settings)
                    if v.entity_type == "order" and v.event_time == at_ms}
            return all((order, *change) in seen for order in self.orders.values())

        wait_for(arrived, timeout=90, interval=1)


def moved(before: dict[WorkerProcess, set], after: dict[WorkerProcess, set]) -> set[tuple[str, int]]:
    """Event partitions whose owner changed."""
    owner_before = {tp: worker for worker, tps in before.items() for tp in tps}
    return {tp for worker, tps in after.items() for tp in tps if owner_before.get(tp) is not worker}


def committed_offsets(settings: Settings) -> dict[tuple[str, int], int]:
    admin = AdminClient({"bootstrap.servers": settings.kafka.bootstrap_servers})
    request = [ConsumerGroupTopicPartitions(group_id(settings), [TopicPartition(t, p) for t, p in event_partitions(settings)])]
    result = admin.list_consumer_group_offsets(request)[group_id(settings)].result(30)
    return {(tp.topic, tp.partition): tp.offset for tp in result.topic_partitions}


def test_workers_join_and_leave_under_load_and_state_follows_the_partitions(cluster3, tmp_path):
    settings = settings_for(cluster3.bootstrap_servers, replication_factor=3, min_insync_replicas=2)
    settings = with_processor(settings, tmp_path / "data")
    ensure_topics(settings)
    events = generate(40_000, 8_000, seed=31)
    with Publisher(settings, source="scale-out") as publisher:
        publisher.publish_many(list(itertools.islice(events, BACKLOG)))
    fleet, steady = Fleet(settings, tmp_path), SteadyEvents(settings, events, RATE)
    probes = Probes(settings, fleet)
    handovers: list[tuple[str, set]] = []
    try:
        fleet.add()
        owners = wait_settled(settings, fleet, timeout=120)
        probes.begin()
        steady.start()

        def rebalance(name: str, change) -> None:
            nonlocal owners
            change()
            after = wait_settled(settings, fleet)
            handovers.append((name, moved(owners, after)))
            assert handovers[-1][1], f"{name}: no partition changed owner"
            owners = after
            probes.next_step()  # folds onto the state each new owner recovered

        rebalance("second worker joins", fleet.add)
        rebalance("third worker joins", fleet.add)
        rebalance("first worker stopped (SIGTERM)", lambda: fleet.retire(fleet.workers[0]))
        killed = fleet.workers[1]
        killed_partitions = owners[killed]
        at_kill: dict = {}

        def kill() -> None:
            fleet.retire(killed, kill=True)
            # Nobody commits for the dead member's partitions until its session times out.
            at_kill.update(committed_offsets(settings))

        rebalance("second worker killed (SIGKILL)", kill)
        steady.stop()
        rebalance("first worker restarted", lambda: fleet.restart(fleet.workers[0]))
        emitted, findings, (checked, wrong, examples) = compare_with_refold(settings, fleet)
    finally:
        if steady.is_alive():
            steady.stop()
        fleet.stop()
    print(f"\n{BACKLOG + steady.published:,} events; handovers: "
          + "; ".join(f"{name}: {len(tps)} partitions moved" for name, tps in handovers)
          + f"\n{findings.expected:,} versions expected, {findings.records:,} records, lost {findings.lost}, "
            f"extra {findings.extra}, different {findings.different}, duplicates {findings.duplicates}")
    assert (findings.lost, findings.extra, findings.different) == (0, 0, 0), findings.examples
    assert_duplicates_bounded(settings, emitted, killed_partitions, at_kill, len(handovers))
    assert wrong == 0 and checked > 0, examples


def compare_with_refold(settings: Settings, fleet: Fleet):
    """The versions emitted against an uninterrupted re-fold of the log, and the endpoints' answers."""
    expected = uninterrupted_versions(settings)
    wait_for(lambda: {v.version_id for v in label_versions(settings)} >= set(expected), timeout=120, interval=2)
    emitted = chaos_checks.emitted_versions(settings)
    endpoint = chaos_checks.endpoint_mismatches([w.url for w in fleet.alive()], chaos_checks.last_versions(expected),
                                                sample=1_000, seed=3, settle_s=30)
    return emitted, chaos_checks.compare_versions(expected, emitted), endpoint


def assert_duplicates_bounded(settings: Settings, emitted, killed_partitions: set, at_kill: dict, handovers: int) -> None:
    """At-least-once repeats only what a handover redoes: the killed worker's events after its last
    commit, and at a graceful handover at most the one batch per agent whose offsets were not
    committed yet (its changelog confirmation was pending)."""
    seen: set = set()
    after_kill, elsewhere = 0, 0
    for version, _ in emitted:
        if version.version_id not in seen:
            seen.add(version.version_id)
            continue
        cause = (version.caused_by.topic, version.caused_by.partition)
        if cause in killed_partitions and version.caused_by.offset >= at_kill.get(cause, 0):
            after_kill += 1
        else:
            elsewhere += 1
    labels = max(Counter(r.entity_type for r in settings.repository.initial_rules()).values())
    graceful_bound = handovers * len(settings.repository.entity_types) * settings.processor.batch_size * labels
    print(f"duplicates: {after_kill} after the killed worker's last commit, {elsewhere} at graceful handovers "
          f"(bound {graceful_bound:,})")
    assert elsewhere <= graceful_bound
