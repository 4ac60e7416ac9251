"""The explorer clicked through in a real headless Chromium (the system's, driven by Playwright).

Every value the page shows is checked against the warehouse or the offline layer. With
LABELSTORE_SCREENSHOTS=<folder> the tests also save the pages they reach as PNGs (docs/images/).
"""

from __future__ import annotations

import os
import shutil
from datetime import datetime
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from labelstore.offline.diff import diff
from labelstore.offline.explain import explain
from labelstore.offline.history import label_history, state_history
from labelstore.offline.monitor import monitor_label
from tests.ui.conftest import STORY
from tests.ui.test_api import final_values

SCREENSHOTS = os.environ.get("LABELSTORE_SCREENSHOTS")


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    assert path, "the browser tests need the system Chromium: apt-get install chromium (.ci/run installs it)"
    return path


@pytest.fixture(scope="module")
def page(explorer):
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), headless=True)
        tab = browser.new_page(viewport={"width": 1280, "height": 860})
        errors: list[str] = []
        tab.on("pageerror", lambda error: errors.append(str(error)))
        tab.set_default_timeout(30_000)
        tab.errors = errors
        yield tab
        browser.close()


@pytest.fixture(autouse=True)
def no_script_errors(page):
    page.errors.clear()
    yield
    assert page.errors == [], f"the page raised: {page.errors}"


def shown(moment: datetime) -> str:
    """A time as the page shows it: UTC, to the millisecond."""
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def change(previous: str | None, value: str | None) -> str:
    return f"{previous or 'null'} → {value or 'null'}"


def screenshot(page: Page, name: str) -> None:
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=Path(SCREENSHOTS) / f"explorer-{name}.png")


def test_search_an_entity_then_read_its_timeline(page, explorer, world):
    page.goto(explorer.url + "/")
    page.select_option("#entity-type", "order")
    page.fill("#entity-prefix", f"{STORY}-la")
    page.click("#search-button")
    expect(page.locator("a.entity-link")).to_have_text([world.late])
    page.click(f"a.entity-link:text-is('{world.late}')")
    expect(page.locator("#timeline-entity")).to_have_text(world.late)

    connection = world.warehouse.connect()
    events = connection.execute('SELECT event_id, event_type, event_time, recorded_at FROM events WHERE entity_id = ? '
                                'ORDER BY recorded_at, "offset"', [world.late]).fetchall()
    expect(page.locator("#events td.event-type")).to_have_text([e[1] for e in events])
    expect(page.locator("#events td.event-time")).to_have_text([shown(e[2]) for e in events])
    expect(page.locator("#events td.recorded-at")).to_have_text([shown(e[3]) for e in events])
    states = page.locator("#events td.state:nth-child(7)")
    expect(states.nth(1)).to_contain_text('"classification":"NOT_FRAUD"')
    expect(states.nth(2)).to_contain_text('"tags":["false-negative"]')

    known = connection.execute(
        "SELECT label, rule_version, previous_value, value, recorded_at, event_id, cause_topic, cause_partition, "
        "cause_offset FROM labels WHERE entity_id = ? ORDER BY recorded_at, cause_offset, label", [world.late]).fetchall()
    rows = page.locator("#known-versions tbody tr")
    expect(rows).to_have_count(len(known))
    for row, (label, version, previous, value, recorded_at, _, topic, partition, offset) in zip(rows.all(), known,
                                                                                                  strict=True):
        expect(row.locator("td")).to_have_text([label, f"v{version}", change(previous, value), shown(recorded_at),
                                                f"{topic}/{partition}@{offset}"])
    valid = explain(world.warehouse, "order", world.late, [world.v1]).valid
    expect(page.locator("#valid-versions td.change")).to_have_text([change(v["previous_value"], v["value"]) for v in valid])
    expect(page.locator("#valid-versions td.at")).to_have_text([shown(v["event_time"]) for v in valid])
    expect(page.locator("#valid-versions td.rule-version")).to_have_text([f"v{v['rule_version']}" for v in valid])

    # Lineage: the fraud label's second known version was caused by the late tag.
    cause = next(v for v in reversed(known) if v[0] == "fraud")
    page.locator(f"#known-versions tr[data-event-id='{cause[5]}'] a.cause").first.click()
    highlighted = page.locator("#events tr.highlight")
    expect(highlighted).to_have_attribute("data-event-id", cause[5])
    expect(highlighted.locator("td.event-type")).to_have_text("OrderTagged")
    expect(page.locator("#timeline-chart[data-rendered=true] svg")).to_have_count(1)
    page.evaluate("window.scrollTo(0, 0)")
    screenshot(page, "timeline")


def confusion_cells(page: Page) -> dict[tuple[str, str], int]:
    cells = page.locator("#confusion td")
    return {(c.get_attribute("data-a"), c.get_attribute("data-b")): int(c.inner_text()) for c in cells.all()}


def as_cells(confusion: dict) -> dict[tuple[str, str], int]:
    """Every (a, b) pair of the values seen, absent ones as 0, NULL written as the page writes it."""
    values = {v for pair in confusion for v in pair}
    return {(a or "null", b or "null"): confusion.get((a, b), 0) for a in values for b in values}


def run_diff(page: Page, axis: str) -> None:
    page.select_option("#diff-axis", axis)
    page.click("#diff-run")
    expect(page.locator("#divergence-chart[data-rendered=true] svg")).to_have_count(1)
    expect(page.locator("#diff-summary")).to_be_visible()


def check_histories(page: Page, world, order: str, axis: str) -> None:
    """Click a differing entity: its label history under each version, on the axis's clock."""
    page.click(f"a.differing-entity:text-is('{order}')")
    expect(page.locator("#histories-entity")).to_have_text(order)
    declaration = world.warehouse.repository.declarations["order"]
    states = state_history(world.warehouse.connect(), declaration, order="log" if axis == "known" else "valid",
                           entity_ids=[order])
    clock = "recorded_at" if axis == "known" else "event_time"
    for table, rule in (("#history-a", world.v1), ("#history-b", world.v2)):
        history = label_history(states, "order", [rule], declaration).to_pylist()
        expect(page.locator(f"{table} td.change")).to_have_text([change(v["previous_value"], v["value"]) for v in history])
        expect(page.locator(f"{table} td.at")).to_have_text([shown(v[clock]) for v in history])


def test_rule_diff_on_both_axes_then_an_entity_that_differs(page, explorer, world):
    page.goto(explorer.url + "/")
    page.click("nav a[data-page=diff]")
    page.select_option("#diff-label", "fraud")
    page.select_option("#diff-a", "1")
    page.select_option("#diff-b", "2")
    expect(page.locator("#diff-axis")).to_have_value("valid")  # business time is the default
    run_diff(page, "valid")
    a, b = final_values(world.warehouse, world.v1, "valid"), final_values(world.warehouse, world.v2, "valid")
    expected = {}
    for entity_id in a:
        expected[(a[entity_id], b[entity_id])] = expected.get((a[entity_id], b[entity_id]), 0) + 1
    expect(page.locator("[data-figure=entities]")).to_have_text(str(len(a)))
    assert confusion_cells(page) == as_cells(expected)
    check_histories(page, world, world.false_positives[1], "valid")
    screenshot(page, "rule-diff")

    run_diff(page, "known")
    report = diff(world.warehouse, world.v1, world.v2)
    expect(page.locator("[data-figure='differing entities']")).to_have_text(str(report.differing_entities))
    expect(page.locator("[data-figure^='first divergence']")).to_have_text(shown(report.first_divergence))
    assert confusion_cells(page) == as_cells(report.confusion)
    order = world.false_positives[0]
    check_histories(page, world, order, "known")
    page.click("#histories-entity")
    expect(page.locator("#timeline-entity")).to_have_text(order)


def test_label_page_draws_rates_distribution_and_drift_markers(page, explorer, world):
    page.goto(explorer.url + "/")
    page.click("nav a[data-page=labels]")
    page.select_option("#monitor-label", "fraud")
    page.select_option("#monitor-axis", "valid")
    page.select_option("#monitor-window", "day")
    page.click("#monitor-run")
    expect(page.locator("#rate-chart[data-rendered=true] svg")).to_have_count(1)
    expect(page.locator("#distribution-chart[data-rendered=true] svg")).to_have_count(1)
    report = monitor_label(world.warehouse, "fraud", window="day", axis="valid")
    # The data the charts were drawn from is monitor's report.
    drawn = page.request.get(explorer.url + "/api/labels/fraud/monitor?axis=valid&window=day").json()
    assert [(r["window_start"], r["positive_rate"]) for r in drawn["rates"]] == [
        (r["window_start"].isoformat(), r["positive_rate"]) for r in report.rates.to_pylist()]
    windows = len(set(report.rates.column("window_start").to_pylist()))
    expect(page.locator("[data-figure=windows]")).to_have_text(str(windows))
    # One point per (window, rule version) with a positive rate; one bar piece per labelled value.
    points = [r for r in report.rates.to_pylist() if r["positive_rate"] is not None]
    assert points
    expect(page.locator("#rate-chart g.mark-symbol.role-mark path")).to_have_count(len(points))
    pieces = [r for r in report.distribution.to_pylist() if r["labels"]]
    expect(page.locator("#distribution-chart g.mark-rect.role-mark path")).to_have_count(len(pieces))
    crossed = [d for d in report.drift if d.crossed]
    assert crossed, "the fraud wave is drift"
    expect(page.locator("[data-figure='drift markers']")).to_have_text(str(len(crossed)))
    expect(page.locator("#rate-chart g.mark-rule.role-mark line")).to_have_count(len(crossed))
    expect(page.locator("#drift tbody tr")).to_have_count(len(report.drift))
    expect(page.locator("#drift tbody tr.crossed")).to_have_count(len(crossed))
    screenshot(page, "labels")


def test_health_page_shows_lag(page, explorer, world):
    page.goto(explorer.url + "/#/health")
    processor = page.locator(".part[data-name=processor]")
    expect(processor.locator("[data-figure=lag]")).to_have_text(str(world.behind))
    expect(page.locator(".part[data-name=materializer] [data-figure=lag]")).to_have_text(str(world.behind))
    lags = processor.locator("td.lag")
    assert sum(int(text) for text in lags.all_inner_texts()) == world.behind
    expect(processor).to_contain_text("no worker in the processor's group")
    screenshot(page, "health")
