"""The cost ledger grows what budgets and routing need: a call's reserved worst-case cost while
it is in flight, the role it served, a short (redacted) error, and indexes for per-agent and
per-project spend.

Only additions, so no row of an existing database is rewritten or lost.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "usage", sa.Column("reserved", sa.Float(), nullable=False, server_default=sa.text("0"))
    )
    op.add_column("usage", sa.Column("role", sa.String(length=32), nullable=True))
    op.add_column("usage", sa.Column("error", sa.Text(), nullable=True))
    op.create_index(op.f("ix_usage_agent_created_at"), "usage", ["agent", "created_at"])
    op.create_index(op.f("ix_usage_outcome"), "usage", ["outcome"])


def downgrade() -> None:
    op.drop_index(op.f("ix_usage_outcome"), table_name="usage")
    op.drop_index(op.f("ix_usage_agent_created_at"), table_name="usage")
    with op.batch_alter_table("usage") as batch:
        batch.drop_column("error")
        batch.drop_column("role")
        batch.drop_column("reserved")
