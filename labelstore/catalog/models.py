"""Catalog tables (SQLAlchemy 2.x). Changes to them go with a migration in ``migrations/versions``."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Float, ForeignKeyConstraint, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class RuleVersionRow(Base):
    """A rule version; never updated once added."""

    __tablename__ = "rule_versions"

    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    entity_type: Mapped[str] = mapped_column(String(63))
    value_type: Mapped[str] = mapped_column(String(16))
    expression: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text, default="")
    maturity_days: Mapped[float | None] = mapped_column(Float, nullable=True)
    author: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ActivationRow(Base):
    """Which version of a label runs online from when on; version NULL: the label is switched off."""

    __tablename__ = "activations"
    __table_args__ = (ForeignKeyConstraint(["name", "version"], ["rule_versions.name", "rule_versions.version"]),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(63), index=True)
    version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    activated_by: Mapped[str] = mapped_column(String(255))
    activated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Where the activation sits in the rules topic: processors switch at this log-append time.
    topic: Mapped[str | None] = mapped_column(String(255), nullable=True)
    partition: Mapped[int | None] = mapped_column(Integer, nullable=True)
    offset: Mapped[int | None] = mapped_column(Integer, nullable=True)
    effective_from: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
