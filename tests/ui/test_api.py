"""The explorer's JSON endpoints without a browser: answers checked against the offline layer, and errors."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from labelstore.offline.diff import diff
from labelstore.offline.history import label_history, state_history
from labelstore.offline.monitor import monitor_label
from labelstore.localkafka.cluster import free_port
from labelstore.status import processor_status
from tests.ui.conftest import STORY


def get(explorer, path: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(explorer.url + path, timeout=60) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def ok(explorer, path: str) -> dict:
    status, body = get(explorer, path)
    assert status == 200, body
    return body


def final_values(warehouse, rule, order: str) -> dict[str, str | None]:
    """Each order's label at its last state in that order, evaluated here with the rule alone."""
    declaration = warehouse.repository.declarations["order"]
    connection = warehouse.connect()
    states = state_history(connection, declaration, order=order)
    history = label_history(states, "order", [rule], declaration).to_pylist()
    final = dict.fromkeys(states.column("entity_id").to_pylist())
    for version in history:  # ordered by entity, then in the history's order
        final[version["entity_id"]] = version["value"]
    return final


def test_search_finds_entities_by_prefix_with_counts_and_latest_labels(explorer, world):
    body = ok(explorer, f"/api/entities/order?prefix={STORY}-fp")
    assert [e["entity_id"] for e in body["entities"]] == list(world.false_positives)
    connection = world.warehouse.connect()
    counts = dict(connection.execute("SELECT entity_id, count(*) FROM events WHERE starts_with(entity_id, ?) "
                                     "GROUP BY ALL", [f"{STORY}-fp"]).fetchall())
    latest = connection.execute("SELECT arg_max(value, recorded_at) FROM labels WHERE entity_id = ? AND label = 'fraud'",
                                [world.false_positives[0]]).fetchone()[0]
    assert {e["entity_id"]: e["events"] for e in body["entities"]} == counts
    assert body["entities"][0]["labels"]["fraud"] == latest
    limited = ok(explorer, "/api/entities/order?prefix=order-&limit=5")
    assert len(limited["entities"]) == 5 and limited["more"] is True


def test_timeline_has_states_and_both_axes(explorer, world):
    body = ok(explorer, f"/api/entities/order/{world.late}/timeline")
    assert [e["event_type"] for e in body["events"]] == ["OrderCreated", "OrderClassified", "OrderTagged"]
    assert body["events"][1]["state"]["classification"] == "NOT_FRAUD"
    assert body["events"][2]["state"]["tags"] == ["false-negative"]
    # Known: negative at the verdict, positive when the late tag arrives; valid: positive from the verdict.
    assert [(v["previous_value"], v["value"]) for v in body["known"] if v["label"] == "fraud"] == [
        (None, "negative"), ("negative", "positive")]
    assert [(v["previous_value"], v["value"]) for v in body["valid"] if v["label"] == "fraud"] == [(None, "positive")]
    verdict = body["events"][1]
    assert verdict["caused"] == [{"label": "fraud", "value": "negative", "rule_version": 1}]


def test_diff_on_the_known_axis_has_offline_diffs_numbers(explorer, world):
    body = ok(explorer, "/api/labels/fraud/diff?a=1&b=2&axis=known")
    report = diff(world.warehouse, world.v1, world.v2)
    assert {(c["a"], c["b"]): c["entities"] for c in body["confusion"]} == report.confusion
    assert body["differing_entities"] == report.differing_entities >= len(world.false_positives)
    assert body["entities"] == report.entities
    assert body["first_divergence"].startswith(report.first_divergence.isoformat()[:23])
    assert set(world.false_positives) <= {e["entity_id"] for e in body["differing"]}


def test_diff_on_the_valid_axis_spreads_divergences_over_business_days(explorer, world):
    body = ok(explorer, "/api/labels/fraud/diff?a=1&b=2")  # valid is the default
    assert body["axis"] == "valid" and body["clock"] == "event_time"
    a, b = final_values(world.warehouse, world.v1, "valid"), final_values(world.warehouse, world.v2, "valid")
    expected = {}
    for entity_id in a:
        expected[(a[entity_id], b[entity_id])] = expected.get((a[entity_id], b[entity_id]), 0) + 1
    assert {(c["a"], c["b"]): c["entities"] for c in body["confusion"]} == expected
    known = ok(explorer, "/api/labels/fraud/diff?a=1&b=2&axis=known")
    # Published in one burst: as known, every divergence falls on the publishing day.
    assert len(known["divergences_by_day"]) == 1
    assert len(body["divergences_by_day"]) > 1
    assert sum(d["entities"] for d in body["divergences_by_day"]) == body["differing_entities"]


def test_an_entitys_histories_under_both_versions(explorer, world):
    order = world.false_positives[1]
    body = ok(explorer, f"/api/labels/fraud/diff/{order}?a=1&b=2&axis=valid")
    assert [(v["previous_value"], v["value"]) for v in body["history_a"]] == [(None, "positive")]
    assert [(v["previous_value"], v["value"]) for v in body["history_b"]] == [(None, "positive"), ("positive", "negative")]


def test_label_monitoring_is_monitors_report(explorer, world):
    body = ok(explorer, "/api/labels/fraud/monitor?axis=valid&window=day")
    report = monitor_label(world.warehouse, "fraud", window="day", axis="valid")
    rates = report.rates.to_pylist()
    assert len(body["rates"]) == len(rates) > 1
    for shown, computed in zip(body["rates"], rates, strict=True):
        assert shown["window_start"] == computed["window_start"].isoformat()
        assert (shown["positive_rate"], shown["labelled"], shown["flips"]) == (
            computed["positive_rate"], computed["labelled"], computed["flips"])
    assert [(d["label"], d["value"], d["crossed"]) for d in body["drift"]] == [
        (d.label, d.value, d.crossed) for d in report.drift]
    assert sum(row["labels"] for row in body["distribution"]) == sum(report.distribution.column("labels").to_pylist())


def test_health_shows_the_processors_lag(explorer, world):
    body = ok(explorer, "/api/health")
    parts = {p["name"]: p for p in body["parts"]}
    assert parts["processor"]["lag"] == world.behind == processor_status(world.settings, ask_workers=False).lag
    assert parts["materializer"]["lag"] == world.behind
    assert body["warehouse"]["last_commit"] == world.warehouse.last_commit().sequence


def test_rules_lists_catalog_versions_and_the_online_one(explorer):
    rules = ok(explorer, "/api/rules")["rules"]
    fraud = {r["version"]: r for r in rules if r["name"] == "fraud"}
    assert set(fraud) == {1, 2} and fraud[1]["active"] and not fraud[2]["active"]
    assert fraud[2]["author"] == "ana"


@pytest.mark.parametrize(("path", "status", "message"), [
    ("/api/entities/invoice", 404, "unknown entity type 'invoice'; known: content, order"),
    ("/api/entities/order?limit=0", 400, "limit must be between 1 and 200, not 0"),
    ("/api/entities/order?limit=many", 400, "query parameter limit='many' is not an integer"),
    ("/api/entities/order/no-such-order/timeline", 404, "no order 'no-such-order' in the warehouse"),
    ("/api/labels/fraud/diff?a=1&b=2&axis=sideways", 400, "unknown time axis 'sideways'"),
    ("/api/labels/fraud/diff?a=1&b=7", 404, "no rule fraud v7 in the catalog (versions of fraud: 1, 2)"),
    ("/api/labels/fraud/diff?a=1", 400, "query parameter 'b' is missing"),
    ("/api/labels/fraud/diff?a=1&b=2&limit=-1", 400, "limit must be between 1 and 1000, not -1"),
    ("/api/labels/fraud/diff/no-such-order?a=1&b=2", 404, "no order 'no-such-order' in the warehouse"),
    ("/api/labels/spam/monitor", 404, "unknown label 'spam'; known: fraud, manual_review, misinformation"),
    ("/api/labels/fraud/monitor?axis=sideways", 400, "unknown time axis 'sideways'"),
    ("/api/labels/fraud/monitor?window=fortnight", 400, "unknown window 'fortnight'"),
    ("/api/nothing-here", 404, "Not Found: GET /api/nothing-here"),
])
def test_errors_are_json_with_a_clear_message(explorer, path, status, message):
    answer_status, body = get(explorer, path)
    assert answer_status == status
    assert message in body["error"]


def test_the_explorer_only_reads(explorer):
    request = urllib.request.Request(explorer.url + "/api/rules", data=b"{}", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 405
    assert "Method Not Allowed" in json.loads(refused.value.read())["error"]


def test_the_command_serves_the_explorer_on_the_loopback_address(world):
    port = free_port()
    environment = {**os.environ, **world.settings.to_environment()}
    command = [sys.executable, "-m", "labelstore", "ui", "--port", str(port), "--no-open"]
    process = subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        announced = process.stdout.readline()  # printed once it listens
        assert f"http://127.0.0.1:{port}/" in announced, process.stderr.read() if process.poll() is not None else ""
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/meta", timeout=30) as answer:
            meta = json.loads(answer.read())
        assert meta["labels"]["fraud"] == "order" and meta["entity_types"] == ["content", "order"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as answer:
            page = answer.read().decode()
        assert "/static/vendor/vega-lite.min.js" in page
        script = f"http://127.0.0.1:{port}/static/vendor/vega-lite.min.js"
        with urllib.request.urlopen(script, timeout=30) as answer:
            plain = answer.read()
        assert b"vegaLite" in plain[:4096]
        packed = urllib.request.Request(script, headers={"Accept-Encoding": "gzip, deflate"})
        with urllib.request.urlopen(packed, timeout=30) as answer:
            assert answer.headers["Content-Encoding"] == "gzip"
            assert gzip.decompress(answer.read()) == plain
    finally:
        process.terminate()
        process.wait(30)
