"""A domain the library never heard of, end to end on the session broker, without library changes.

A temporary repository is created with `labelstore init`, given an `account` entity (five event
types) and an `account_takeover` rule, planned and applied; then events are published by type
name, a worker serves the latest label live, the materializer archives, and as-of (both axes),
backfill + diff of a second rule version, check, explain and snapshot all answer through the CLI.
Last, the schema evolves while the worker runs (a new optional field, a new event type): applied,
published, folded; nothing is dead-lettered.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from random import Random

import pytest
import yaml

from labelstore.events.publisher import Publisher
from labelstore.events.reader import count_records
from labelstore.materializers.materializer import Materializer
from labelstore.offline.asof import as_of
from labelstore.processors.client import LatestLabelsClient
from labelstore.repository import Repository
from labelstore.settings import Settings
from labelstore.warehouse import Warehouse
from tests.offline.conftest import processed_everything
from tests.processors.worker_process import WorkerProcess, label_versions, wait_for, with_processor
from tests.repository.account_domain import RULE_V2, evolve_domain, write_domain

T0 = datetime(2026, 4, 1, 8, 0, tzinfo=UTC)
ACCOUNTS = 300
LABEL = "account_takeover"


def cli(root, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """`labelstore --repo ROOT ...` as a user runs it, in a process of its own."""
    environment = {**os.environ, "LABELSTORE_REPO": str(root), "COLUMNS": "200"}
    result = subprocess.run([sys.executable, "-m", "labelstore", "--repo", str(root), *args], env=environment,
                            capture_output=True, text=True, timeout=300)
    if check:
        assert result.returncode == 0, f"labelstore {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def lifecycle(rng: Random, account: str, start: datetime) -> list[tuple]:
    """(event_type, entity_id, event_time, payload) of one account's life."""
    t = start
    events = [("LoginSucceeded", account, t, {"ip": "10.0.0.1", "device_id": f"{account}-phone", "country": "DE"})]
    for _ in range(rng.choice([0, 1, 3, 4])):
        t += timedelta(minutes=rng.randint(1, 30))
        events.append(("LoginFailed", account, t, {"ip": f"203.0.113.{rng.randint(1, 250)}", "reason": "BAD_PASSWORD"}))
    if rng.random() < 0.4:
        t += timedelta(minutes=rng.randint(1, 60))
        events.append(("PasswordReset", account, t, {"channel": rng.choice(["EMAIL", "SMS", "SUPPORT"])}))
    if rng.random() < 0.3:
        t += timedelta(hours=rng.randint(1, 48))
        events.append(("DeviceAdded", account, t, {"device_id": f"{account}-laptop"}))
    if rng.random() < 0.3:
        t += timedelta(days=rng.randint(5, 40))
        events.append(("ChargebackFiled", account, t, {"amount_cents": rng.randint(100, 90_000), "reason_code": "4837"}))
    return events


def story() -> list[tuple]:
    """An account taken over: a password reset from a new device, a chargeback two weeks later."""
    a = "acct-story"
    return [("LoginSucceeded", a, T0, {"ip": "10.0.0.9", "device_id": None, "country": "FR"}),
            ("PasswordReset", a, T0 + timedelta(hours=1), {"channel": "SUPPORT"}),
            ("DeviceAdded", a, T0 + timedelta(hours=2), {"device_id": "unknown-tablet"}),
            ("ChargebackFiled", a, T0 + timedelta(days=14), {"amount_cents": 45_000, "reason_code": "4837"})]


@pytest.fixture(scope="module")
def repo(kafka_cluster, tmp_path_factory):
    """The repository, created, filled, planned and applied through the CLI."""
    root = tmp_path_factory.mktemp("acme") / "acme-labels"
    cli(root.parent, "init", str(root))
    config = yaml.safe_load((root / "labelstore.yaml").read_text())
    config["kafka"]["bootstrap_servers"] = kafka_cluster.bootstrap_servers
    config["topics"]["prefix"] = f"acme{time.time_ns() % 10**9}."
    (root / "labelstore.yaml").write_text(yaml.safe_dump(config))
    write_domain(root)
    return root


@pytest.fixture(scope="module")
def world(repo, tmp_path_factory):
    """Planned, applied, published and processed by a worker that keeps running for the module."""
    timings = {}
    planned = cli(repo, "plan").stdout
    started = time.monotonic()
    cli(repo, "apply")
    timings["apply_s"] = time.monotonic() - started
    settings = with_processor(Settings(repo=repo), tmp_path_factory.mktemp("acme-worker"))
    worker = WorkerProcess(settings, repo / "worker.log").start()
    rng = Random(5)
    events = story() + [e for i in range(ACCOUNTS) for e in lifecycle(rng, f"acct-{i:04d}", T0 + timedelta(minutes=i))]
    events.sort(key=lambda event: event[2])
    started = time.monotonic()
    with Publisher(settings, source="acme-auth") as publisher:
        for event_type, entity_id, event_time, payload in events:
            publisher.publish(event_type, entity_id=entity_id, event_time=event_time, payload=payload)
    wait_for(lambda: processed_everything(settings), timeout=180, worker=worker)
    timings["publish_and_process_s"] = time.monotonic() - started
    yield {"root": repo, "settings": settings, "worker": worker, "plan": planned, "events": events, "timings": timings}
    worker.stop()


def test_plan_shows_what_apply_will_register_and_apply_records_it(world):
    plan = world["plan"]
    for name in ("account", "account.LoginFailed", "account.ChargebackFiled", "account_takeover v1", "account.events"):
        assert name in plan, plan
    released = list((world["root"] / "schemas" / "history").glob("*.avsc"))
    assert len(released) == 5
    assert "up to date" in cli(world["root"], "plan").stdout


def test_the_latest_label_is_served_live(world):
    client = LatestLabelsClient(world["worker"].url)
    assert client.value("account", "acct-story", LABEL) == "positive"
    versions = [v for v in label_versions(world["settings"]) if v.entity_id == "acct-story"]
    assert [(v.previous_value, v.value) for v in versions] == [(None, "negative"), ("negative", "positive")]
    print(f"\nnew domain: {len(world['events'])} events, {len(label_versions(world['settings']))} label versions, "
          f"timings {world['timings']}")


@pytest.fixture(scope="module")
def warehouse(world):
    settings = world["settings"]
    Materializer(settings).run(until_caught_up=True)
    return Warehouse(settings.warehouse.path, repository=Repository(world["root"]))


def test_as_of_on_both_axes(world, warehouse):
    valid_before = as_of(warehouse, LABEL, entity_ids=["acct-story"], valid_at=T0 + timedelta(days=13)).to_pylist()
    valid_after = as_of(warehouse, LABEL, entity_ids=["acct-story"], valid_at=T0 + timedelta(days=14)).to_pylist()
    assert (valid_before[0]["value"], valid_after[0]["value"]) == ("negative", "positive")
    known_now = as_of(warehouse, LABEL, entity_ids=["acct-story"], known_at=datetime.now(UTC)).to_pylist()
    known_before = as_of(warehouse, LABEL, entity_ids=["acct-story"], known_at=T0).to_pylist()
    assert (known_before[0]["value"], known_now[0]["value"]) == (None, "positive")
    answer = cli(world["root"], "asof", LABEL, "--entity", "acct-story", "--valid-at", "2026-04-01T09:00:00Z").stdout
    assert "negative" in answer


def test_check_explain_and_snapshot(world, warehouse):
    assert "acct-story" in cli(world["root"], "explain", "account", "acct-story", "--png",
                               str(world["root"] / "story.png")).stdout
    cli(world["root"], "check")  # exits 1 on any difference between the re-fold and the processor
    [(last_recorded,)] = warehouse.connect().execute("SELECT max(recorded_at) FROM events").fetchall()
    known_at = last_recorded.isoformat()  # the archive is complete up to its last record
    cli(world["root"], "snapshot", "first", "--labels", LABEL, "--known-at", known_at)
    manifest = json.loads((warehouse.snapshots_dir / "first" / "manifest.json").read_text())
    assert manifest["rows"] == ACCOUNTS + 1 and manifest["content_sha256"]


def test_backfill_and_diff_of_a_second_rule_version(world, warehouse):
    root = world["root"]
    (root / "rules" / "account_takeover.v2.sql").write_text(RULE_V2)
    assert "account_takeover v2" in cli(root, "plan").stdout
    cli(root, "apply")
    cli(root, "rules", "backfill", LABEL, "--version", "2")
    diff = cli(root, "rules", "diff", LABEL, "1", "2").stdout
    assert "positive" in diff and "negative" in diff


def test_a_new_field_and_a_new_event_type_while_the_worker_runs(world):
    root, settings = world["root"], world["settings"]
    evolve_domain(root)
    plan = cli(root, "plan").stdout
    assert "account.MfaEnabled" in plan and "LoginFailed.payload.country" in plan
    cli(root, "apply")
    now = datetime.now(UTC)
    with Publisher(settings, repository=Repository(root), source="acme-auth") as publisher:
        publisher.publish("LoginFailed", entity_id="acct-evolved", event_time=now,
                          payload={"ip": "10.1.1.1", "reason": "LOCKED", "country": "NL"}).result(60)
        publisher.publish("MfaEnabled", entity_id="acct-evolved", event_time=now, payload={"method": "totp"}).result(60)
        publisher.publish("LoginFailed", entity_id="acct-0001", event_time=now,
                          payload={"ip": "10.1.1.2", "reason": "BAD_OTP", "country": None}).result(60)
    wait_for(lambda: processed_everything(settings), timeout=120, worker=world["worker"])
    assert count_records(settings, settings.topics.dead_letter_topic) == 0
    entity = LatestLabelsClient(world["worker"].url).entity("account", "acct-evolved")
    assert entity["state"]["mfa_method"] == "totp" and entity["state"]["last_country"] == "NL"
    assert entity["labels"][LABEL]["value"] == "negative"
