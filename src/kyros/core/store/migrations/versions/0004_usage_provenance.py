"""The cost ledger says where each call's cost came from, and may not know it.

``usage.cost_source``: ``configured`` (a price set in settings), ``reported`` (the provider's
own figure), ``listed`` (litellm's price list) or ``unknown``; rows written before this revision
keep it empty (their source was not recorded). ``usage.cost`` becomes nullable: an unknown cost
is NULL, never 0.

Nothing is rewritten but the nullability of one column; on SQLite that copies the table (a
batch migration, run with foreign keys off as every migration is), and every row stays.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("usage") as batch:
        batch.add_column(sa.Column("cost_source", sa.String(length=16), nullable=True))
        batch.alter_column("cost", existing_type=sa.Float(), nullable=True)


def downgrade() -> None:
    # An unknown cost has no number to go back to: 0, as kyros counted it before.
    op.execute(sa.text("UPDATE usage SET cost = 0 WHERE cost IS NULL"))
    with op.batch_alter_table("usage") as batch:
        batch.alter_column("cost", existing_type=sa.Float(), nullable=False)
        batch.drop_column("cost_source")
