"""Table definitions (SQLAlchemy Core). Migrations in ``migrations/versions`` create exactly these.

Core tables rather than ORM classes: the queue's hot path runs a few statements per job and ORM
unit-of-work bookkeeping costs ~7x there (naive ORM ~700 jobs/s vs >5,000 with Core on SQLite).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite hands back naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use datetime.now(UTC)")
        value = value.astimezone(UTC)
        # SQLite compares datetimes as text: store them naive in one fixed format.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


# BigInteger ids that still autoincrement on SQLite (where only INTEGER PRIMARY KEY does).
BigId = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

runs = Table(
    "runs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("goal", Text, nullable=False),
    Column("workspace", Text, nullable=False),
    Column("agent", String(128)),
    Column("model", String(256)),
    Column("api_base", Text),
    Column("output", JSON),
    Column("error", Text),
    Column("tokens_in", BigInteger, nullable=False, default=0),
    Column("tokens_out", BigInteger, nullable=False, default=0),
    Column("cost", Float, nullable=False, default=0.0),
    Column("parent_id", String(32), ForeignKey("runs.id", ondelete="SET NULL")),
    Column("thread_id", String(32)),
    Column("job_id", BigId),
    Column("last_seq", Integer, nullable=False, default=0),
    # Kind-specific inputs (plan run to follow, diff to review, pipeline stop point, ...).
    Column("params", JSON),
    # The exact action a run in ``needs_approval`` waits on; None otherwise.
    Column("pending", JSON),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("started_at", UTCDateTime),
    Column("finished_at", UTCDateTime),
    # The registry id of the node whose worker claimed the run's job last (docs/cluster.md).
    Column("node", String(128)),
    Index(None, "status"),
    Index(None, "created_at"),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("kind", String(64), nullable=False),
    Column("run_id", String(32), ForeignKey("runs.id", ondelete="CASCADE")),
    Column("payload", JSON, nullable=False),
    Column("status", String(16), nullable=False),
    # Lower runs first, like nice(1): the claim order (status, priority, id) is then one index.
    Column("priority", Integer, nullable=False, default=0),
    Column("attempts", Integer, nullable=False, default=0),
    Column("stalls", Integer, nullable=False, default=0),
    Column("max_attempts", Integer, nullable=False),
    Column("run_at", UTCDateTime, nullable=False),
    Column("lease_owner", String(64)),
    Column("lease_expires_at", UTCDateTime),
    Column("fencing_token", BigInteger, nullable=False, default=0),
    Column("cancel_requested", Boolean, nullable=False, default=False),
    Column("result", JSON),
    Column("error", Text),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime),
    # Crash attribution (ADR 0026): this attempt runs alone in its pool, so a crash counts
    # against it (a stall); ``losses`` counts crashes it was only present at.
    Column("isolated", Boolean, nullable=False, default=False),
    Column("losses", Integer, nullable=False, default=0),
    # The registry id of the node that claimed the latest attempt; kept after it settles.
    Column("claimed_by", String(128)),
    # The claim query walks this index in order: queued, most urgent, oldest first.
    Index(None, "status", "priority", "id"),
    Index(None, "status", "lease_expires_at"),
)

#: Attempts that ended without success (lost with their node, stalled alone, failed, released
#: at shutdown): a dead-lettered job keeps why each try ended (ADR 0026).
job_attempts = Table(
    "job_attempts",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("job_id", BigId, ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    Column("run_id", String(32), ForeignKey("runs.id", ondelete="CASCADE")),
    Column("attempt", Integer, nullable=False),
    Column("fencing_token", BigInteger, nullable=False),
    Column("owner", String(64)),
    # lost | stalled | dead | failed | retry | released
    Column("outcome", String(16), nullable=False),
    Column("isolated", Boolean, nullable=False, default=False),
    # Other jobs of the same worker found expired in the same reaper pass.
    Column("beside", Integer, nullable=False, default=0),
    Column("error", Text),
    Column("retry_at", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    Index(None, "job_id", "id"),
    Index(None, "run_id"),
    # The reaper counts what a dead worker held across its passes.
    Index(None, "owner"),
)

events = Table(
    "events",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("run_id", String(32), ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("type", String(64), nullable=False),
    Column("data", JSON, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("run_id", "seq"),
)

agents = Table(
    "agents",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("role", String(32), nullable=False),
    Column("model", String(256)),
    Column("system_prompt", Text),
    Column("tools", JSON, nullable=False),
    Column("approval_policy", String(16), nullable=False),
    Column("limits", JSON, nullable=False),
    Column("status", String(16), nullable=False),
    Column("current_run", String(32)),
    Column("builtin", Boolean, nullable=False, default=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    # What happens when this agent's work falls short: revisions, a stronger model, a human.
    Column("escalation", JSON),
    Column("paused", Boolean, nullable=False, default=False),
)

quality_assessments = Table(
    "quality_assessments",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    # The critic run that judged, and the run whose work was judged (if it was a run).
    Column("run_id", String(32), ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("target_run_id", String(32), ForeignKey("runs.id", ondelete="SET NULL")),
    Column("score", Integer, nullable=False),
    Column("verdict", String(16), nullable=False),
    Column("summary", Text),
    Column("findings", JSON, nullable=False),
    Column("model", String(256)),
    Column("created_at", UTCDateTime, nullable=False),
    Index(None, "run_id"),
    Index(None, "target_run_id"),
)

escalation_workflows = Table(
    "escalation_workflows",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    # The run whose quality gate fell short (a pipeline, or an implement run).
    Column("run_id", String(32), ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("step", Integer, nullable=False),
    # revise | stronger_model | human | accepted | rejected
    Column("action", String(32), nullable=False),
    Column("reason", Text, nullable=False),
    Column("assessment_id", BigId),
    Column("child_run_id", String(32)),
    Column("detail", JSON),
    Column("created_at", UTCDateTime, nullable=False),
    Index(None, "run_id", "step"),
)

threads = Table(
    "threads",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("title", Text),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

messages = Table(
    "messages",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("thread_id", String(32), ForeignKey("threads.id", ondelete="CASCADE"), nullable=False),
    Column("run_id", String(32), ForeignKey("runs.id", ondelete="SET NULL")),
    Column("role", String(16), nullable=False),
    Column("content", Text, nullable=False),
    Column("meta", JSON),
    Column("created_at", UTCDateTime, nullable=False),
    Index(None, "thread_id", "id"),
)

usage = Table(
    "usage",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("run_id", String(32), ForeignKey("runs.id", ondelete="SET NULL")),
    Column("agent", String(128)),
    Column("project", Text),
    Column("model", String(256), nullable=False),
    Column("provider", String(64)),
    Column("tokens_in", BigInteger, nullable=False, default=0),
    Column("tokens_out", BigInteger, nullable=False, default=0),
    Column("cached_tokens", BigInteger, nullable=False, default=0),
    #: USD; NULL when unknown (no price known for the model, or the call was lost).
    Column("cost", Float),
    Column("latency_ms", Float),
    Column("outcome", String(32), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    #: Worst-case cost held for budgets while the call is in flight (outcome ``pending``).
    Column("reserved", Float, nullable=False, default=0.0, server_default="0"),
    Column("role", String(32)),
    Column("error", Text),
    #: Where ``cost`` came from: configured, reported, listed or unknown (NULL: not recorded).
    Column("cost_source", String(16)),
    Index(None, "run_id"),
    Index(None, "created_at"),
    Index(None, "agent", "created_at"),
    Index(None, "outcome"),
)


service_registry = Table(
    "service_registry",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("role", String(16), nullable=False),  # all | api | worker
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("version", String(64), nullable=False),
    Column("api_version", String(16), nullable=False),
    Column("schema_revision", String(32), nullable=False),
    Column("url", Text),
    Column("capabilities", JSON, nullable=False),
    Column("capacity", Integer, nullable=False, default=0),
    Column("load", Integer, nullable=False, default=0),
    Column("state", String(16), nullable=False),  # up | draining | down
    # Bumped at every registration: a heartbeat of an earlier incarnation matches no row.
    Column("incarnation", BigInteger, nullable=False, default=0),
    Column("started_at", UTCDateTime, nullable=False),
    Column("last_heartbeat", UTCDateTime, nullable=False),
    # Set from the DATABASE's clock on PostgreSQL (ADR 0028): nodes' clocks need not agree.
    Column("expires_at", UTCDateTime, nullable=False),
    Column("stopped_at", UTCDateTime),
    Column("reason", Text),
    Index(None, "state", "expires_at"),
)


def row_dict(row: Any) -> dict[str, Any]:
    """A result row as a plain dict."""
    return dict(row._mapping)
