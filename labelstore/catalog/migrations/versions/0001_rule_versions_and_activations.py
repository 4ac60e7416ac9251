"""Rule versions and their activations.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "rule_versions",
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("entity_type", sa.String(63), nullable=False),
        sa.Column("value_type", sa.String(16), nullable=False),
        sa.Column("expression", sa.Text, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("author", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "activations",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(63), nullable=False, index=True),
        sa.Column("version", sa.Integer, nullable=True),
        sa.Column("activated_by", sa.String(255), nullable=False),
        sa.Column("activated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["name", "version"], ["rule_versions.name", "rule_versions.version"]),
    )


def downgrade() -> None:
    op.drop_table("activations")
    op.drop_table("rule_versions")
