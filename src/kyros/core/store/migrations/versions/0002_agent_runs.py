"""Agent runs: run params and pending approvals, agent escalation policy, quality assessments,
escalation workflows.

Only additions (nullable columns or columns with a server default, and new tables), so no row of
an existing database is rewritten or lost.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.add_column("runs", sa.Column("params", sa.JSON(), nullable=True))
    op.add_column("runs", sa.Column("pending", sa.JSON(), nullable=True))
    op.add_column("agents", sa.Column("escalation", sa.JSON(), nullable=True))
    op.add_column(
        "agents",
        sa.Column("paused", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.create_table(
        "quality_assessments",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("target_run_id", sa.String(length=32), nullable=True),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("verdict", sa.String(length=16), nullable=False),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.Column("findings", sa.JSON(), nullable=False),
        sa.Column("model", sa.String(length=256), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["runs.id"],
            name=op.f("fk_quality_assessments_run_id_runs"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["target_run_id"],
            ["runs.id"],
            name=op.f("fk_quality_assessments_target_run_id_runs"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quality_assessments")),
    )
    op.create_index(
        op.f("ix_quality_assessments_run_id"), "quality_assessments", ["run_id"], unique=False
    )
    op.create_index(
        op.f("ix_quality_assessments_target_run_id"),
        "quality_assessments",
        ["target_run_id"],
        unique=False,
    )
    op.create_table(
        "escalation_workflows",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("assessment_id", BigId, nullable=True),
        sa.Column("child_run_id", sa.String(length=32), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["runs.id"],
            name=op.f("fk_escalation_workflows_run_id_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_escalation_workflows")),
    )
    op.create_index(
        op.f("ix_escalation_workflows_run_id_step"),
        "escalation_workflows",
        ["run_id", "step"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_escalation_workflows_run_id_step"), table_name="escalation_workflows")
    op.drop_table("escalation_workflows")
    op.drop_index(op.f("ix_quality_assessments_target_run_id"), table_name="quality_assessments")
    op.drop_index(op.f("ix_quality_assessments_run_id"), table_name="quality_assessments")
    op.drop_table("quality_assessments")
    with op.batch_alter_table("agents") as batch:
        batch.drop_column("paused")
        batch.drop_column("escalation")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("pending")
        batch.drop_column("params")
