"""The rule catalog on any SQLAlchemy database (SQLite file by default, PostgreSQL in docker-compose).

Opening a catalog brings its schema to the current revision (Alembic migrations in
``migrations/``), so an existing catalog upgrades in place, keeping its rows. A repository's rules
are registered by ``labelstore apply``. A rule version is immutable: adding the same name and
version again with another expression is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, select
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session

from labelstore.catalog.models import ActivationRow, RuleVersionRow
from labelstore.errors import LabelstoreError
from labelstore.rules.model import LabelRule

MIGRATIONS = Path(__file__).parent / "migrations"


class CatalogError(LabelstoreError):
    """A catalog operation that cannot be done; the message says why."""


@dataclass(frozen=True)
class StoredRule:
    rule: LabelRule
    author: str
    created_at: datetime


@dataclass(frozen=True)
class Activation:
    name: str
    version: int | None  # None: switched off
    activated_by: str
    activated_at: datetime
    effective_from: datetime | None
    offset: int | None


class RuleCatalog:
    def __init__(self, url: str, *, revision: str = "head") -> None:
        self.url = url
        self.engine: Engine = _engine(url)
        upgrade(self.engine, revision)

    def add(self, rule: LabelRule, author: str) -> tuple[StoredRule, bool]:
        """Store a new version; returns it and whether it was new (the same content again is fine)."""
        with Session(self.engine) as session, session.begin():
            existing = session.get(RuleVersionRow, (rule.name, rule.version))
            if existing is not None:
                stored = _stored(existing)
                if stored.rule != rule:
                    raise CatalogError(
                        f"{rule.key} exists already (added by {existing.author} on {existing.created_at:%Y-%m-%d}) "
                        f"with other content; rule versions are immutable: add it as version "
                        f"{self._next_version(session, rule.name)}")
                return stored, False
            row = RuleVersionRow(
                name=rule.name, version=rule.version, entity_type=rule.entity_type, value_type=rule.value_type,
                expression=rule.expression, description=rule.description, maturity_days=rule.maturity_days,
                author=author, created_at=datetime.now(UTC))
            session.add(row)
            session.flush()
            return _stored(row), True

    def get(self, name: str, version: int | None = None) -> StoredRule:
        with Session(self.engine) as session:
            query = select(RuleVersionRow).where(RuleVersionRow.name == name)
            if version is not None:
                query = query.where(RuleVersionRow.version == version)
            row = session.scalars(query.order_by(RuleVersionRow.version.desc())).first()
            if row is None:
                known = sorted(session.scalars(select(RuleVersionRow.version).where(RuleVersionRow.name == name)))
                what = f"{name} v{version}" if version is not None else f"label {name!r}"
                labels = session.scalars(select(RuleVersionRow.name).distinct().order_by(RuleVersionRow.name))
                hint = f"versions of {name}: {', '.join(map(str, known))}" if known else f"labels: {', '.join(labels)}"
                raise CatalogError(f"no rule {what} in the catalog ({hint})")
            return _stored(row)

    def versions(self, name: str | None = None) -> list[StoredRule]:
        with Session(self.engine) as session:
            query = select(RuleVersionRow).order_by(RuleVersionRow.name, RuleVersionRow.version)
            if name is not None:
                query = query.where(RuleVersionRow.name == name)
            return [_stored(row) for row in session.scalars(query)]

    def record_activation(self, name: str, version: int | None, by: str, *, topic: str | None = None,
                          partition: int | None = None, offset: int | None = None,
                          effective_from: datetime | None = None) -> Activation:
        if version is not None:
            self.get(name, version)
        with Session(self.engine) as session, session.begin():
            row = ActivationRow(name=name, version=version, activated_by=by, activated_at=datetime.now(UTC),
                                topic=topic, partition=partition, offset=offset, effective_from=effective_from)
            session.add(row)
            session.flush()
            return _activation(row)

    def activations(self, name: str | None = None) -> list[Activation]:
        with Session(self.engine) as session:
            query = select(ActivationRow).order_by(ActivationRow.id)
            if name is not None:
                query = query.where(ActivationRow.name == name)
            return [_activation(row) for row in session.scalars(query)]

    def active_version(self, name: str) -> int | None:
        """The version running online: the last activation, else the label's first version (a new
        label runs its first version until an activation says otherwise, as the processor does)."""
        history = self.activations(name)
        if history:
            return history[-1].version
        with Session(self.engine) as session:
            return session.scalars(select(RuleVersionRow.version).where(RuleVersionRow.name == name)
                                   .order_by(RuleVersionRow.version)).first()

    @staticmethod
    def _next_version(session: Session, name: str) -> int:
        versions = list(session.scalars(select(RuleVersionRow.version).where(RuleVersionRow.name == name)))
        return max(versions, default=0) + 1


def upgrade(engine: Engine, revision: str = "head") -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def _engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    return create_engine(url)


def _stored(row: RuleVersionRow) -> StoredRule:
    rule = LabelRule(name=row.name, version=row.version, entity_type=row.entity_type, value_type=row.value_type,
                     expression=row.expression, description=row.description, maturity_days=row.maturity_days)
    created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC)
    return StoredRule(rule, row.author, created)


def _activation(row: ActivationRow) -> Activation:
    def aware(value: datetime | None) -> datetime | None:
        return value if value is None or value.tzinfo else value.replace(tzinfo=UTC)

    return Activation(row.name, row.version, row.activated_by, aware(row.activated_at), aware(row.effective_from), row.offset)


def rules_for(catalog: RuleCatalog, names: Sequence[str], versions: dict[str, int] | None = None) -> list[LabelRule]:
    """The given versions of labels, or each label's active version."""
    versions = versions or {}
    chosen = []
    for name in names:
        version = versions.get(name) or catalog.active_version(name)
        if version is None:
            raise CatalogError(f"label {name!r} is switched off; name a version")
        chosen.append(catalog.get(name, version).rule)
    return chosen
