"""Crash attribution (ADR 0026): whether a job's attempt runs alone, how often its node died
while it ran beside others, and the history of attempts that ended without success.

Only additions, so no row of an existing database is rewritten or lost: existing jobs get
``isolated = false`` and ``losses = 0``.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.add_column(
        "jobs", sa.Column("isolated", sa.Boolean(), nullable=False, server_default=sa.false())
    )
    op.add_column(
        "jobs", sa.Column("losses", sa.Integer(), nullable=False, server_default=sa.text("0"))
    )
    op.create_table(
        "job_attempts",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("job_id", BigId, nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("fencing_token", sa.BigInteger(), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("isolated", sa.Boolean(), nullable=False),
        sa.Column("beside", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("retry_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_job_attempts_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_job_attempts_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_attempts")),
    )
    op.create_index(op.f("ix_job_attempts_job_id_id"), "job_attempts", ["job_id", "id"])
    op.create_index(op.f("ix_job_attempts_run_id"), "job_attempts", ["run_id"])
    op.create_index(op.f("ix_job_attempts_owner"), "job_attempts", ["owner"])


def downgrade() -> None:
    op.drop_index(op.f("ix_job_attempts_owner"), table_name="job_attempts")
    op.drop_index(op.f("ix_job_attempts_run_id"), table_name="job_attempts")
    op.drop_index(op.f("ix_job_attempts_job_id_id"), table_name="job_attempts")
    op.drop_table("job_attempts")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("losses")
        batch.drop_column("isolated")
