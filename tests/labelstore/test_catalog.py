"""The rule catalog (SQLite here; any SQLAlchemy URL works) and rule files."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from labelstore.catalog.store import CatalogError, RuleCatalog, upgrade
from labelstore.rules.exceptions import InvalidRuleError
from labelstore.rules.files import read_rule_file
from labelstore.rules.model import LabelRule
from tests.fraud_example import EXAMPLE as REPOSITORY

EXAMPLE = Path(__file__).parents[2] / "examples" / "fraud" / "fraud.v2.sql"


@pytest.fixture(scope="module")
def postgres():
    from tests.postgres import PostgresServer

    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """A fresh, empty catalog database of each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'catalog.sqlite'}"
    server = request.getfixturevalue("postgres")
    name = f"catalog_{tmp_path.name.lower().replace('-', '_')[-40:]}"
    with create_engine(server.url, isolation_level="AUTOCOMMIT").connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    return server.url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture
def catalog(database_url):
    """A catalog with the example repository's rules registered, as `labelstore apply` does."""
    catalog = RuleCatalog(database_url)
    for rule in REPOSITORY.rules:
        catalog.add(rule, "apply")
    return catalog


def test_a_new_catalog_is_empty_and_a_new_label_runs_its_first_version(database_url):
    catalog = RuleCatalog(database_url)
    assert catalog.versions() == [] and catalog.active_version("fraud") is None
    v2 = read_rule_file(EXAMPLE)
    catalog.add(v2, "ana")
    catalog.add(v2.model_copy(update={"version": 1}), "ana")
    assert catalog.active_version("fraud") == 1  # the first version, until an activation says otherwise
    catalog.record_activation("fraud", 2, "ana")
    assert catalog.active_version("fraud") == 2


def test_a_rule_version_is_immutable(catalog):
    rule = read_rule_file(EXAMPLE)
    stored, new = catalog.add(rule, "ana")
    assert new and stored.author == "ana" and catalog.get("fraud").rule == rule  # latest version
    assert catalog.add(rule, "bob") == (stored, False)  # the same content again: fine
    changed = rule.model_copy(update={"expression": "'positive'"})
    with pytest.raises(CatalogError, match="fraud v2 exists already .* add it as version 3"):
        catalog.add(changed, "bob")
    with pytest.raises(CatalogError, match="no rule fraud v9 in the catalog \\(versions of fraud: 1, 2\\)"):
        catalog.get("fraud", 9)


def test_activation_history(catalog):
    catalog.add(read_rule_file(EXAMPLE), "ana")
    catalog.record_activation("fraud", 2, "ana", offset=0, effective_from=datetime(2026, 3, 1, tzinfo=UTC))
    catalog.record_activation("fraud", None, "bob")
    assert [(a.version, a.activated_by) for a in catalog.activations("fraud")] == [(2, "ana"), (None, "bob")]
    assert catalog.active_version("fraud") is None
    with pytest.raises(CatalogError):
        catalog.record_activation("fraud", 7, "ana")


def test_an_old_catalog_upgrades_without_loss(database_url):
    url = database_url
    upgrade(create_engine(url), "0001")  # a catalog made by the first release
    with create_engine(url).begin() as connection:
        connection.execute(text(
            "INSERT INTO rule_versions (name, version, entity_type, value_type, expression, description, author, created_at)"
            " VALUES ('fraud', 7, 'order', 'string', '''positive''', 'old', 'eve', '2026-01-01 00:00:00+00')"))
        connection.execute(text("INSERT INTO activations (name, version, activated_by, activated_at)"
                                " VALUES ('fraud', 7, 'eve', '2026-01-02 00:00:00+00')"))
    catalog = RuleCatalog(url)
    old = catalog.get("fraud", 7)
    assert (old.rule.expression, old.author, old.rule.maturity_days) == ("'positive'", "eve", None)
    assert [(a.version, a.activated_by, a.effective_from) for a in catalog.activations("fraud")] == [(7, "eve", None)]
    assert catalog.active_version("fraud") == 7


@pytest.mark.parametrize(("expression", "message"), [
    ("CASE WHEN clasification = 'FRAUD' THEN 'positive' END", "unknown field 'clasification'.*line 1, column 11"),
    ("CASE WHEN classification = 'FRAUD' THEN 1 END", "returns INTEGER"),
    ("(SELECT count(*) FROM read_csv('/etc/passwd'))", "table"),
    ("CASE WHEN classification = 'FRAUD' THEN 'positive'", "syntax error"),
])
def test_invalid_rules_are_refused_with_a_useful_message(tmp_path, expression, message):
    path = tmp_path / "bad.sql"
    path.write_text(f"-- name: fraud\n-- version: 3\n-- entity_type: order\n{expression}\n")
    with pytest.raises(InvalidRuleError, match=f"(?s)bad.sql: .*{message}"):
        read_rule_file(path)


def test_rule_files_in_yaml_and_sql(tmp_path):
    sql = read_rule_file(EXAMPLE)
    yaml = tmp_path / "fraud.yaml"
    yaml.write_text("\n".join([f"name: {sql.name}", f"version: {sql.version}", f"entity_type: {sql.entity_type}",
                               f"maturity_days: {sql.maturity_days}", f"description: \"{sql.description}\"",
                               "expression: |-", *("  " + line for line in sql.expression.splitlines())]) + "\n")
    assert read_rule_file(yaml) == sql
    with pytest.raises(InvalidRuleError, match="unknown entity_type 'invoice'"):
        (tmp_path / "x.sql").write_text("-- name: x\n-- version: 1\n-- entity_type: invoice\n'a'\n")
        read_rule_file(tmp_path / "x.sql")
    assert isinstance(sql, LabelRule)
