"""Rule maturity windows; where each activation sits in the rules topic.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    with op.batch_alter_table("rule_versions") as table:
        table.add_column(sa.Column("maturity_days", sa.Float, nullable=True))
    with op.batch_alter_table("activations") as table:
        table.add_column(sa.Column("topic", sa.String(255), nullable=True))
        table.add_column(sa.Column("partition", sa.Integer, nullable=True))
        table.add_column(sa.Column("offset", sa.Integer, nullable=True))
        table.add_column(sa.Column("effective_from", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("activations") as table:
        for column in ("effective_from", "offset", "partition", "topic"):
            table.drop_column(column)
    with op.batch_alter_table("rule_versions") as table:
        table.drop_column("maturity_days")
