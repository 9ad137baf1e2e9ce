"""The service registry (docs/cluster.md, ADR 0028): one row per node that joined the
database, and which node claimed each job and run.

Only additions: existing jobs and runs get ``claimed_by`` / ``node`` NULL (claimed before
nodes had ids).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("claimed_by", sa.String(length=128), nullable=True))
    op.add_column("runs", sa.Column("node", sa.String(length=128), nullable=True))
    op.create_table(
        "service_registry",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("api_version", sa.String(length=16), nullable=False),
        sa.Column("schema_revision", sa.String(length=32), nullable=False),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("capabilities", sa.JSON(), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("load", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("incarnation", sa.BigInteger(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_heartbeat", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_service_registry")),
    )
    op.create_index(
        op.f("ix_service_registry_state_expires_at"), "service_registry", ["state", "expires_at"]
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_service_registry_state_expires_at"), table_name="service_registry")
    op.drop_table("service_registry")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("node")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("claimed_by")
