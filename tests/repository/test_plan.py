"""`init`, `plan` and `apply` on repositories the tests make; what is refused, and why it says so."""

from __future__ import annotations

import json
from datetime import UTC, datetime
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from labelstore.catalog.store import RuleCatalog
from labelstore.plan import PlanError, apply_plan, make_plan
from labelstore.repository import NoRepositoryError, Repository, find_root, locate
from labelstore.settings import Settings
from tests.fraud_example import EXAMPLE_ROOT


def labelstore(*args: str, cwd: Path, repo: str | None = None) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "LABELSTORE_REPO"}
    if repo is not None:
        environment["LABELSTORE_REPO"] = repo
    return subprocess.run([sys.executable, "-m", "labelstore", *args], cwd=cwd, env=environment,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def repo(tmp_path) -> Path:
    """A copy of the fraud example whose state lives in the test's folder."""
    root = tmp_path / "labels"
    shutil.copytree(EXAMPLE_ROOT, root, ignore=shutil.ignore_patterns(".labelstore", "warehouse", "__pycache__"))
    return root


def plan_of(root: Path, catalog: RuleCatalog | None = None):
    settings = Settings(repo=root)
    return make_plan(Repository(root), settings, catalog=catalog or RuleCatalog(settings.rules.catalog_url),
                     check_topics=False)


def test_without_a_repository_commands_say_so_in_one_line(tmp_path):
    result = labelstore("plan", cwd=tmp_path)
    assert result.returncode == 1
    message = result.stderr.strip()
    assert "no label repository here" in message and "labelstore init" in message and "--repo" in message
    assert find_root(tmp_path) is None


def test_init_makes_an_empty_repository_found_from_a_subfolder(tmp_path):
    assert labelstore("init", "mine", cwd=tmp_path).returncode == 0
    (tmp_path / "mine" / "entities" / "deep").mkdir()
    assert find_root(tmp_path / "mine" / "entities" / "deep") == (tmp_path / "mine").resolve()
    settings = Settings(repo=tmp_path / "mine")
    assert settings.warehouse.path == (tmp_path / "mine" / "warehouse").resolve()
    assert str((tmp_path / "mine" / ".labelstore" / "catalog.sqlite").resolve()) in settings.rules.catalog_url
    plan = make_plan(Repository(tmp_path / "mine"), settings, check_topics=False)
    assert plan.ok and plan.pending == []
    again = labelstore("init", "mine", cwd=tmp_path)
    assert again.returncode == 1 and "is a label repository already" in again.stderr
    assert "no example 'nope'" in labelstore("init", "other", "--example", "nope", cwd=tmp_path).stderr


def test_a_repository_named_that_is_none_is_refused(tmp_path):
    with pytest.raises(NoRepositoryError, match="is not a label repository"):
        locate(tmp_path)


def test_plan_lists_everything_new_and_apply_records_it(repo, tmp_path):
    shutil.rmtree(repo / "schemas" / "history")
    plan = plan_of(repo)
    assert plan.ok
    pending = {(c.kind, c.name) for c in plan.pending}
    assert {("entity type", "order"), ("event type", "order.OrderClassified"), ("rule", "fraud v1")} <= pending
    assert sum(c.kind == "schema release" for c in plan.pending) == 11
    settings = Settings(repo=repo)
    catalog = RuleCatalog(settings.rules.catalog_url)
    # apply without a broker: the topic step fails; the plan itself never wrote anything
    assert not (repo / "schemas" / "history").exists()
    for rule in plan.new_rules:
        catalog.add(rule, "test")
    assert {c.name for c in plan_of(repo, catalog).pending if c.kind == "rule"} == set()


def test_an_incompatible_schema_change_is_refused_with_the_reason(repo):
    path = repo / "schemas" / "order" / "labelstore.order.OrderTagged.avsc"
    schema = json.loads(path.read_text())
    schema["fields"][0]["type"] = "long"  # tag: string -> long
    path.write_text(json.dumps(schema))
    plan = plan_of(repo)
    assert not plan.ok
    assert "OrderTagged" in plan.problems[0] and "cannot read" in plan.problems[0]
    with pytest.raises(PlanError, match="nothing applied"):
        apply_plan(plan, Settings(repo=repo))


def test_a_new_optional_field_is_a_compatible_change(repo):
    path = repo / "schemas" / "order" / "labelstore.order.OrderTagged.avsc"
    schema = json.loads(path.read_text())
    schema["fields"].append({"name": "comment", "type": ["null", "string"], "default": None})
    path.write_text(json.dumps(schema))
    plan = plan_of(repo)
    assert plan.ok
    changed = [c for c in plan.pending if c.kind == "event type"]
    assert [(c.name, c.action) for c in changed] == [("order.OrderTagged", "change")]
    assert "new fields: comment" in changed[0].detail
    assert ("field", "OrderTagged.payload.comment") in {(c.kind, c.name) for c in plan.pending}


def test_a_declaration_that_does_not_fit_the_schemas_is_refused_naming_file_and_field(repo):
    path = repo / "entities" / "order.yaml"
    path.write_text(path.read_text().replace("from: payload.classification", "from: payload.clasification"))
    plan = plan_of(repo)
    assert not plan.ok
    assert "entities/order.yaml" in plan.problems[0] and "payload.clasification" in plan.problems[0]


def test_a_rule_that_reads_an_unknown_field_is_refused_naming_file_line_and_column(repo):
    (repo / "rules" / "fraud.v3.sql").write_text(
        "-- name: fraud\n-- version: 3\n-- entity_type: order\nCASE WHEN clasification = 'X' THEN 'positive' END\n")
    plan = plan_of(repo)
    assert not plan.ok
    assert "fraud.v3.sql" in plan.problems[0] and "unknown field 'clasification'" in plan.problems[0]
    assert "line 1, column 11" in plan.problems[0]


def test_a_registered_rule_version_may_not_change(repo):
    settings = Settings(repo=repo)
    catalog = RuleCatalog(settings.rules.catalog_url)
    for rule in plan_of(repo, catalog).new_rules:
        catalog.add(rule, "test")
    path = repo / "rules" / "fraud.v1.yaml"
    path.write_text(path.read_text().replace("THEN 'positive'", "THEN 'yes'"))
    plan = plan_of(repo, catalog)
    assert not plan.ok and "fraud v1 is registered with other content" in plan.problems[0]


def test_settings_come_from_the_repository_and_the_environment_overrides_them(repo, monkeypatch, tmp_path):
    config = repo / "labelstore.yaml"
    config.write_text(config.read_text().replace("path: warehouse", "path: data/wh")
                      + "processor:\n  web_port: 7001\n  batch_size: 50\n")
    monkeypatch.chdir(repo / "entities")  # found from a subfolder, like git
    monkeypatch.delenv("LABELSTORE_REPO")
    monkeypatch.setenv("LABELSTORE_PROCESSOR__WEB_PORT", "7002")
    settings = Settings()
    assert settings.repo == repo.resolve() and settings.project == "fraud"
    assert settings.warehouse.path == (repo / "data" / "wh").resolve()
    assert (settings.processor.web_port, settings.processor.batch_size) == (7002, 50)
    assert settings.repository.entity_types == ["content", "order"]
    monkeypatch.chdir(tmp_path)
    assert Settings().repo is None  # no repository here: defaults only
    with pytest.raises(NoRepositoryError, match="no label repository here"):
        _ = Settings().repository


def test_codegen_writes_importable_typed_classes(repo, tmp_path):
    assert labelstore("codegen", "-o", str(tmp_path / "fraud_events.py"), cwd=repo, repo=str(repo)).returncode == 0
    sys.path.insert(0, str(tmp_path))
    try:
        import fraud_events
    finally:
        sys.path.remove(str(tmp_path))
    model = fraud_events.EVENT_MODELS["OrderTagged"]
    event = model(entity_id="o-1", event_time=datetime(2026, 1, 1, tzinfo=UTC), source="crm",
                  payload={"tag": "vip", "team": "crm"})
    assert event.to_record()["payload"] == {"tag": "vip", "team": "crm"}
