"""Budget reservations on the cost ledger: hold a call's worst case before it is made.

A capped call first writes a ``pending`` usage row holding its worst-case cost in ``reserved``,
in the same transaction that sums what each cap has spent and holds already; it settles to the
real cost afterwards. Spend (``cost + reserved``) therefore never passes a cap, also when many runs
race for one: SQLite's ``BEGIN IMMEDIATE`` serializes the transactions, and on PostgreSQL a
transaction-scoped advisory lock does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, func, insert, select, text, update

from kyros.core.store.bridge import Conn, execute_prepared
from kyros.core.store.schema import runs, usage, utcnow

#: What identifies a call's row; a settlement leaves them as the reservation wrote them.
_TAGS = frozenset({"run_id", "agent", "project", "model", "provider", "role"})

ERROR_CHARS = 500
#: The advisory lock every budget reservation takes on PostgreSQL (an arbitrary constant).
BUDGET_LOCK = 0x6B79726F73  # "kyros"


@dataclass(frozen=True)
class Cap:
    """A spending limit: ``scope`` is run, agent, project or day; ``key`` what it is about."""

    scope: str
    key: str | None
    limit: float

    def describe(self) -> str:
        if self.scope == "run":
            return f"the run's budget of ${self.limit:.2f}"
        if self.scope == "day":
            return f"today's budget of ${self.limit:.2f}"
        return f"{self.scope} {self.key!r}'s budget of ${self.limit:.2f} for today"


def day_start(now: datetime) -> datetime:
    """Midnight UTC of ``now``'s day: daily caps reset then."""
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def _where(cap: Cap, since: datetime) -> Any:
    if cap.scope == "run":
        return usage.c.run_id == cap.key
    if cap.scope == "agent":
        return and_(usage.c.agent == cap.key, usage.c.created_at >= since)
    if cap.scope == "project":
        return and_(usage.c.project == cap.key, usage.c.created_at >= since)
    return usage.c.created_at >= since


async def spent(conn: Conn, cap: Cap, now: datetime | None = None) -> float:
    """What ``cap`` has spent or holds for calls in flight."""
    since = day_start(now or utcnow())
    # An unknown cost (NULL: a call made without any cap) cannot be counted: it adds 0 here.
    total = func.coalesce(func.sum(func.coalesce(usage.c.cost, 0.0) + usage.c.reserved), 0.0)
    result = await conn.execute(select(total).where(_where(cap, since)))
    return float(result.scalar() or 0.0)


@dataclass(frozen=True)
class Refusal:
    """The cap a call would break, with what it had spent (incl. calls in flight)."""

    cap: Cap
    spent: float
    worst: float


async def reserve(
    conn: Conn, caps: list[Cap], worst: float, *, postgres: bool, **values: Any
) -> int | Refusal:
    """In a write transaction: the pending row's id, or the first cap ``worst`` would break."""
    if postgres:
        await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": BUDGET_LOCK})
    now = utcnow()
    for cap in caps:
        used = await spent(conn, cap, now)
        if used + worst > cap.limit + 1e-12:
            return Refusal(cap, used, worst)
    result = await conn.execute(
        insert(usage)
        .values(created_at=now, outcome="pending", reserved=worst, **values)
        .returning(usage.c.id)
    )
    return int(result.scalar_one())


#: Every column a call's row sets, as parameters: built once, so SQLite runs it prepared.
CALL_COLUMNS = (
    "run_id",
    "agent",
    "project",
    "model",
    "provider",
    "role",
    "tokens_in",
    "tokens_out",
    "cached_tokens",
    "cost",
    "cost_source",
    "latency_ms",
    "outcome",
    "error",
)
_RECORD = insert(usage).values(
    {name: bindparam(name) for name in (*CALL_COLUMNS, "reserved", "created_at")}
)
_SETTLE = (
    update(usage)
    .where(usage.c.id == bindparam("row_id"))
    .values({**{n: bindparam(n) for n in CALL_COLUMNS if n not in _TAGS}, "reserved": 0.0})
)
_ADD_TOTALS = (
    update(runs)
    .where(runs.c.id == bindparam("for_run"))
    .values(
        tokens_in=runs.c.tokens_in + bindparam("add_in"),
        tokens_out=runs.c.tokens_out + bindparam("add_out"),
        cost=runs.c.cost + bindparam("add_cost"),
        updated_at=bindparam("now"),
    )
)


def attempt_values(completion: Any, outcome: str, error: str | None) -> dict[str, Any]:
    """The ledger columns of one attempt: a completion's usage (None: a failed attempt), its
    outcome and its error (already redacted; cut to 500 characters)."""
    c = completion
    return {
        "tokens_in": c.tokens_in if c else 0,
        "tokens_out": c.tokens_out if c else 0,
        "cached_tokens": c.cached_tokens if c else 0,
        # A failed attempt returned nothing to count: 0, from no source.
        "cost": c.cost if c else 0.0,
        "cost_source": c.cost_source if c else None,
        "latency_ms": c.latency_ms if c else None,
        "outcome": outcome,
        "error": error[:ERROR_CHARS] if error else None,
    }


async def settle(conn: Conn, row_id: int, **values: Any) -> None:
    """Replace a pending row's reservation by what the call really cost (or its failure)."""
    await execute_prepared(conn, _SETTLE, {"row_id": row_id, **values})


async def record(conn: Conn, **values: Any) -> None:
    """One settled ledger row (a call without a pending reservation)."""
    row = dict.fromkeys(CALL_COLUMNS)
    row.update(values, reserved=0.0, created_at=utcnow())
    await execute_prepared(conn, _RECORD, row)


async def add_run_totals(
    conn: Conn, run_id: str, tokens_in: int, tokens_out: int, cost: float
) -> None:
    """The run's running totals, incremented atomically (concurrent calls lose nothing)."""
    await execute_prepared(
        conn,
        _ADD_TOTALS,
        {
            "for_run": run_id,
            "add_in": tokens_in,
            "add_out": tokens_out,
            "add_cost": cost,
            "now": utcnow(),
        },
    )


async def release_stale(conn: Conn, older_than: timedelta) -> int:
    """Settle reservations left by a daemon that died mid-call: the provider may have charged,
    so the worst case stays counted as cost (budgets err on the side of the cap)."""
    cutoff = utcnow() - older_than
    result = await conn.execute(
        update(usage)
        .where(usage.c.outcome == "pending", usage.c.created_at < cutoff)
        .values(outcome="interrupted", cost=usage.c.reserved, reserved=0.0)
    )
    return int(result.rowcount or 0)


#: Outcome of a call that was in flight when its daemon died (found when the run resumes).
LOST = "lost"
LOST_ERROR = "the daemon stopped during this call; what the provider billed is not known"


async def lose_pending(conn: Conn, run_id: str) -> int:
    """Settle the run's reservations left by its dead attempt as ``lost``, at their worst case
    (an estimate from the request: the provider may have billed up to that)."""
    result = await conn.execute(
        update(usage)
        .where(usage.c.run_id == run_id, usage.c.outcome == "pending")
        .values(outcome=LOST, cost=usage.c.reserved, reserved=0.0, error=LOST_ERROR)
    )
    return int(result.rowcount or 0)


async def settled_since(conn: Conn, run_id: str, since: datetime) -> bool:
    """Whether the run has a ledger row written at or after ``since``."""
    result = await conn.execute(
        select(usage.c.id).where(usage.c.run_id == run_id, usage.c.created_at >= since).limit(1)
    )
    return result.first() is not None


async def record_lost(conn: Conn, **tags: Any) -> None:
    """A call lost with its daemon: tokens and cost unknown (NULL, not 0)."""
    await record(
        conn,
        **tags,
        tokens_in=0,
        tokens_out=0,
        cached_tokens=0,
        cost=None,
        cost_source="unknown",
        latency_ms=None,
        outcome=LOST,
        error=LOST_ERROR,
    )
