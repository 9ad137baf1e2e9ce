"""The durable job queue's SQL: enqueue, claim with a lease and a fencing token, settle, reap.

At-least-once delivery. A claim bumps ``fencing_token``; every later write about that attempt
(heartbeat, completion, failure) names the token it holds, so a worker whose lease expired and
whose job was claimed again can no longer change the job: its writes match zero rows.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, insert, select, update

from kyros.core.store.bridge import Conn
from kyros.core.store.schema import jobs, row_dict, utcnow


@dataclass(frozen=True)
class ClaimedJob:
    """One attempt at a job, as its worker holds it."""

    id: int
    kind: str
    run_id: str | None
    payload: dict[str, Any]
    attempts: int
    max_attempts: int
    stalls: int
    fencing_token: int


@dataclass(frozen=True)
class Settlement:
    """The outcome of one attempt, written back in a batch by :func:`claim_and_settle`."""

    job: ClaimedJob
    status: str  # succeeded | failed | cancelled | retry | released
    result: Any = None
    error: str | None = None
    retry_at: datetime | None = None


def backoff(attempt: int, base: float, ceiling: float) -> float:
    """Exponential backoff with jitter: ``base·2^(attempt-1)`` capped, scaled by U(0.5, 1)."""
    delay: float = min(ceiling, base * (2 ** max(0, attempt - 1)))
    return delay * random.uniform(0.5, 1.0)


async def enqueue(
    conn: Conn,
    kind: str,
    payload: dict[str, Any],
    *,
    run_id: str | None = None,
    priority: int = 0,
    max_attempts: int = 3,
    run_at: datetime | None = None,
) -> int:
    now = utcnow()
    return int(
        (
            await conn.execute(
                insert(jobs)
                .values(
                    kind=kind,
                    payload=payload,
                    run_id=run_id,
                    status="queued",
                    priority=priority,
                    attempts=0,
                    stalls=0,
                    max_attempts=max_attempts,
                    run_at=run_at or now,
                    fencing_token=0,
                    cancel_requested=False,
                    created_at=now,
                    updated_at=now,
                )
                .returning(jobs.c.id)
            )
        ).scalar_one()
    )


async def enqueue_many(
    conn: Conn, kind: str, payloads: Sequence[dict[str, Any]], *, max_attempts: int = 3
) -> None:
    now = utcnow()
    await conn.execute(
        insert(jobs),
        [
            {
                "kind": kind,
                "payload": p,
                "run_id": None,
                "status": "queued",
                "priority": 0,
                "attempts": 0,
                "stalls": 0,
                "max_attempts": max_attempts,
                "run_at": now,
                "fencing_token": 0,
                "cancel_requested": False,
                "created_at": now,
                "updated_at": now,
            }
            for p in payloads
        ],
    )


_SETTLE = (
    update(jobs)
    .where(
        jobs.c.id == bindparam("b_id"),
        jobs.c.fencing_token == bindparam("b_token"),
        jobs.c.status == "running",
    )
    .values(
        status=bindparam("b_status"),
        result=bindparam("b_result"),
        error=bindparam("b_error"),
        run_at=bindparam("b_run_at"),
        finished_at=bindparam("b_finished"),
        lease_owner=None,
        lease_expires_at=None,
        updated_at=bindparam("b_now"),
    )
)


async def settle(conn: Conn, settlements: Sequence[Settlement]) -> None:
    """Write outcomes of attempts; an attempt whose fencing token is stale changes nothing."""
    if not settlements:
        return
    now = utcnow()
    params = []
    for s in settlements:
        if s.status in ("retry", "released"):
            status, finished, run_at = "queued", None, s.retry_at or now
        else:
            status, finished, run_at = s.status, now, None
        params.append(
            {
                "b_id": s.job.id,
                "b_token": s.job.fencing_token,
                "b_status": status,
                "b_result": s.result,
                "b_error": s.error,
                "b_finished": finished,
                "b_run_at": run_at,
                "b_now": now,
            }
        )
    if any(p["b_run_at"] is None for p in params):
        # run_at is NOT NULL; a finished job keeps the time it last became runnable.
        for p in params:
            if p["b_run_at"] is None:
                p["b_run_at"] = now
    await conn.execute(_SETTLE, params)


def _claim_statement(postgres: bool) -> Any:
    # Built once: a statement object keeps its cache key, so each claim only binds values.
    candidates = (
        select(jobs.c.id)
        .where(jobs.c.status == "queued", jobs.c.run_at <= bindparam("c_now"))
        .order_by(jobs.c.priority, jobs.c.id)
        .limit(bindparam("c_limit"))
    )
    if postgres:
        candidates = candidates.with_for_update(skip_locked=True)
    return (
        update(jobs)
        .where(jobs.c.id.in_(candidates.scalar_subquery()))
        .values(
            status="running",
            attempts=jobs.c.attempts + 1,
            lease_owner=bindparam("c_owner"),
            lease_expires_at=bindparam("c_expires", type_=jobs.c.lease_expires_at.type),
            fencing_token=jobs.c.fencing_token + 1,
            updated_at=bindparam("c_updated", type_=jobs.c.updated_at.type),
        )
        .returning(
            jobs.c.id,
            jobs.c.kind,
            jobs.c.run_id,
            jobs.c.payload,
            jobs.c.attempts,
            jobs.c.max_attempts,
            jobs.c.stalls,
            jobs.c.fencing_token,
        )
    )


_CLAIM = {False: _claim_statement(False), True: _claim_statement(True)}


async def claim(
    conn: Conn, owner: str, limit: int, lease_seconds: float, *, postgres: bool
) -> list[ClaimedJob]:
    """Atomically take up to ``limit`` runnable jobs for ``owner`` (SKIP LOCKED on PostgreSQL)."""
    if limit <= 0:
        return []
    now = utcnow()
    rows = await conn.execute(
        _CLAIM[postgres],
        {
            "c_now": now,
            "c_limit": limit,
            "c_owner": owner,
            "c_expires": now + timedelta(seconds=lease_seconds),
            "c_updated": now,
        },
    )
    claimed = [ClaimedJob(**row_dict(r)) for r in rows]
    claimed.sort(key=lambda j: j.id)
    return claimed


async def heartbeat(conn: Conn, owner: str, lease_seconds: float) -> dict[int, tuple[int, bool]]:
    """Extend every lease ``owner`` holds; returns ``{job id: (fencing token, cancel asked)}``."""
    rows = await conn.execute(
        update(jobs)
        .where(jobs.c.lease_owner == owner, jobs.c.status == "running")
        .values(lease_expires_at=utcnow() + timedelta(seconds=lease_seconds))
        .returning(jobs.c.id, jobs.c.fencing_token, jobs.c.cancel_requested)
    )
    return {int(r.id): (int(r.fencing_token), bool(r.cancel_requested)) for r in rows}


async def lease_owners(conn: Conn) -> list[str]:
    """The owners holding a lease right now."""
    rows = await conn.execute(
        select(jobs.c.lease_owner).where(jobs.c.status == "running").distinct()
    )
    return [str(r.lease_owner) for r in rows if r.lease_owner]


async def void_leases(conn: Conn, owners: Sequence[str]) -> int:
    """End the leases ``owners`` hold now (their processes are known to be gone): the reaper's
    next pass re-queues the jobs, counting a stall as for any lost attempt."""
    if not owners:
        return 0
    result = await conn.execute(
        update(jobs)
        .where(jobs.c.status == "running", jobs.c.lease_owner.in_(list(owners)))
        .values(lease_expires_at=utcnow() - timedelta(seconds=1))
    )
    return int(result.rowcount or 0)


@dataclass(frozen=True)
class Reaped:
    job_id: int
    run_id: str | None
    dead: bool
    stalls: int


async def reap(
    conn: Conn,
    *,
    max_stalls: int,
    retry_base: float,
    retry_max: float,
    postgres: bool,
    limit: int = 500,
) -> list[Reaped]:
    """Re-queue jobs whose lease expired (their worker died or hung); dead-letter those that
    stalled ``max_stalls`` times."""
    now = utcnow()
    query = (
        select(jobs.c.id, jobs.c.run_id, jobs.c.stalls, jobs.c.fencing_token)
        .where(jobs.c.status == "running", jobs.c.lease_expires_at < now)
        .limit(limit)
    )
    if postgres:
        query = query.with_for_update(skip_locked=True)
    out = []
    for row in (await conn.execute(query)).all():
        stalls = int(row.stalls) + 1
        dead = stalls >= max_stalls
        values: dict[str, Any] = {
            "stalls": stalls,
            "lease_owner": None,
            "lease_expires_at": None,
            "updated_at": now,
        }
        if dead:
            values.update(
                status="dead",
                finished_at=now,
                error=f"dead-lettered: its worker stopped renewing the lease {stalls} times "
                "(crashed, killed or hung)",
            )
        else:
            values.update(
                status="queued",
                run_at=now + timedelta(seconds=backoff(stalls, retry_base, retry_max)),
            )
        result = await conn.execute(
            update(jobs)
            .where(
                and_(
                    jobs.c.id == row.id,
                    jobs.c.fencing_token == row.fencing_token,
                    jobs.c.status == "running",
                )
            )
            .values(**values)
        )
        if result.rowcount:
            out.append(Reaped(job_id=int(row.id), run_id=row.run_id, dead=dead, stalls=stalls))
    return out


async def request_cancel(conn: Conn, job_id: int) -> str | None:
    """Cancel a queued job at once, or flag a running one; returns the job's status after."""
    now = utcnow()
    done = await conn.execute(
        update(jobs)
        .where(jobs.c.id == job_id, jobs.c.status == "queued")
        .values(status="cancelled", finished_at=now, updated_at=now)
    )
    if done.rowcount:
        return "cancelled"
    await conn.execute(
        update(jobs)
        .where(jobs.c.id == job_id, jobs.c.status == "running")
        .values(cancel_requested=True, updated_at=now)
    )
    status = (await conn.execute(select(jobs.c.status).where(jobs.c.id == job_id))).scalar()
    return None if status is None else str(status)


async def fenced(conn: Conn, job_id: int, fencing_token: int) -> bool:
    """True while the attempt holding ``fencing_token`` still owns the job (row locked on PG)."""
    row = (
        await conn.execute(
            select(jobs.c.fencing_token, jobs.c.status).where(jobs.c.id == job_id).with_for_update()
        )
    ).first()
    return bool(row and row.fencing_token == fencing_token and row.status == "running")


async def get(conn: Conn, job_id: int) -> dict[str, Any] | None:
    row = (await conn.execute(select(jobs).where(jobs.c.id == job_id))).first()
    return row_dict(row) if row else None


async def list_jobs(
    conn: Conn, *, limit: int = 100, status: str | None = None
) -> list[dict[str, Any]]:
    query = select(jobs).order_by(jobs.c.id.desc()).limit(limit)
    if status:
        query = query.where(jobs.c.status == status)
    return [row_dict(r) for r in await conn.execute(query)]


async def counts(conn: Conn) -> dict[str, int]:
    from sqlalchemy import func

    rows = await conn.execute(select(jobs.c.status, func.count()).group_by(jobs.c.status))
    return {str(status): int(n) for status, n in rows}
