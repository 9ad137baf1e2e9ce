"""The durable job queue's SQL: enqueue, claim with a lease and a fencing token, settle, reap.

At-least-once delivery. A claim bumps ``fencing_token``; every later write about that attempt
(heartbeat, completion, failure) names the token it holds, so a worker whose lease expired and
whose job was claimed again can no longer change the job: its writes match zero rows.

Crash attribution (ADR 0026): a job whose worker died while it ran beside others is a
*suspect* (status ``suspect``), not guilty: it waits out a backoff and is then claimed alone
(:func:`claim_suspect`, ``isolated``). Only a crash while it ran alone counts a stall. Every
attempt that ends without success leaves a row in ``job_attempts``.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, func, insert, select, update

from kyros.core.store.bridge import Conn
from kyros.core.store.schema import job_attempts, jobs, row_dict, utcnow

#: Waiting for a retry that must run alone: its worker died while it ran (ADR 0026).
SUSPECT = "suspect"


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
    #: Claimed as a suspect: nothing else runs in its pool meanwhile.
    isolated: bool = False


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
        # A released attempt gives its attempt back: shutting down is not the job's fault.
        attempts=jobs.c.attempts - bindparam("b_uncount"),
        isolated=False,
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
    history = []
    for s in settlements:
        if s.status == "released":
            # A suspect released at shutdown has not proved itself: it stays one.
            status, finished, run_at = SUSPECT if s.job.isolated else "queued", None, now
        elif s.status == "retry":
            status, finished, run_at = "queued", None, s.retry_at or now
        else:
            status, finished, run_at = s.status, now, now  # run_at is NOT NULL: kept as is
        params.append(
            {
                "b_id": s.job.id,
                "b_token": s.job.fencing_token,
                "b_status": status,
                "b_result": s.result,
                "b_error": s.error,
                "b_finished": finished,
                "b_run_at": run_at,
                "b_uncount": 1 if s.status == "released" else 0,
                "b_now": now,
            }
        )
        if s.status != "succeeded":
            history.append(_attempt_row(s.job, s.status, s.error, s.retry_at, now))
    await conn.execute(_SETTLE, params)
    if history:
        await conn.execute(insert(job_attempts), history)


def _attempt_row(
    job: ClaimedJob,
    outcome: str,
    error: str | None,
    retry_at: datetime | None,
    now: datetime,
    *,
    owner: str | None = None,
    beside: int = 0,
) -> dict[str, Any]:
    return {
        "job_id": job.id,
        "run_id": job.run_id,
        "attempt": job.attempts,
        "fencing_token": job.fencing_token,
        "owner": owner,
        "outcome": outcome,
        "isolated": job.isolated,
        "beside": beside,
        "error": error,
        "retry_at": retry_at,
        "created_at": now,
    }


def _claim_statement(postgres: bool, *, suspects: bool = False) -> Any:
    # Built once: a statement object keeps its cache key, so each claim only binds values.
    candidates = (
        select(jobs.c.id)
        .where(
            jobs.c.status == (SUSPECT if suspects else "queued"),
            jobs.c.run_at <= bindparam("c_now"),
        )
        .order_by(jobs.c.priority, jobs.c.id)
        .limit(bindparam("c_limit"))
    )
    if postgres:
        candidates = candidates.with_for_update(skip_locked=True)
    values: dict[str, Any] = {
        "status": "running",
        "attempts": jobs.c.attempts + 1,
        "lease_owner": bindparam("c_owner"),
        "lease_expires_at": bindparam("c_expires", type_=jobs.c.lease_expires_at.type),
        "fencing_token": jobs.c.fencing_token + 1,
        "claimed_by": bindparam("c_node", type_=jobs.c.claimed_by.type),
        "updated_at": bindparam("c_updated", type_=jobs.c.updated_at.type),
    }
    if suspects:
        values["isolated"] = True
    return (
        update(jobs)
        .where(jobs.c.id.in_(candidates.scalar_subquery()))
        .values(**values)
        .returning(
            jobs.c.id,
            jobs.c.kind,
            jobs.c.run_id,
            jobs.c.payload,
            jobs.c.attempts,
            jobs.c.max_attempts,
            jobs.c.stalls,
            jobs.c.fencing_token,
            jobs.c.isolated,
        )
    )


_CLAIM = {
    (postgres, suspects): _claim_statement(postgres, suspects=suspects)
    for postgres in (False, True)
    for suspects in (False, True)
}


async def claim(
    conn: Conn,
    owner: str,
    limit: int,
    lease_seconds: float,
    *,
    postgres: bool,
    node: str | None = None,
) -> list[ClaimedJob]:
    """Atomically take up to ``limit`` runnable jobs for ``owner`` (SKIP LOCKED on PostgreSQL);
    ``node``, the claiming node's registry id, is kept in ``claimed_by``."""
    return await _claim(
        conn, owner, limit, lease_seconds, postgres=postgres, suspects=False, node=node
    )


async def claim_suspect(
    conn: Conn, owner: str, lease_seconds: float, *, postgres: bool, node: str | None = None
) -> ClaimedJob | None:
    """Take one due suspect for an isolated attempt: the caller runs nothing else meanwhile."""
    claimed = await _claim(
        conn, owner, 1, lease_seconds, postgres=postgres, suspects=True, node=node
    )
    return claimed[0] if claimed else None


async def _claim(
    conn: Conn,
    owner: str,
    limit: int,
    lease_seconds: float,
    *,
    postgres: bool,
    suspects: bool,
    node: str | None,
) -> list[ClaimedJob]:
    if limit <= 0:
        return []
    now = utcnow()
    rows = await conn.execute(
        _CLAIM[postgres, suspects],
        {
            "c_now": now,
            "c_limit": limit,
            "c_owner": owner,
            "c_node": node,
            "c_expires": now + timedelta(seconds=lease_seconds),
            "c_updated": now,
        },
    )
    claimed = [ClaimedJob(**row_dict(r)) for r in rows]
    claimed.sort(key=lambda j: j.id)
    return claimed


async def suspect_due(conn: Conn) -> bool:
    """Whether a suspect waits for its isolated attempt now (one indexed probe)."""
    row = await conn.execute(
        select(jobs.c.id)
        .where(jobs.c.status == SUSPECT, jobs.c.run_at <= utcnow())
        .order_by(jobs.c.priority, jobs.c.id)
        .limit(1)
    )
    return row.first() is not None


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
    """A job whose worker stopped renewing its lease, and what the reaper made of it."""

    job_id: int
    run_id: str | None
    #: Dead-lettered: it stalled ``max_stalls`` times while it ran alone.
    dead: bool
    stalls: int
    #: ``stalled`` (it ran alone: the crash counts), ``lost`` (it ran beside others: a
    #: suspect) or ``dead``.
    outcome: str = "stalled"
    beside: int = 0
    attempt: int = 0
    retry_at: datetime | None = None
    reason: str = ""


async def reap(
    conn: Conn,
    *,
    max_stalls: int,
    retry_base: float,
    retry_max: float,
    postgres: bool,
    limit: int = 500,
) -> list[Reaped]:
    """Attribute the crashes of workers whose leases expired (ADR 0026).

    A job that ran alone (claimed isolated, or the only job its worker held) counts a stall and
    is dead-lettered at ``max_stalls``. A job that ran beside others is a suspect: no stall, and
    it is retried alone. Either way the retry waits ``backoff(stalls + losses)``.
    """
    now = utcnow()
    query = (
        select(
            jobs.c.id,
            jobs.c.kind,
            jobs.c.run_id,
            jobs.c.payload,
            jobs.c.attempts,
            jobs.c.max_attempts,
            jobs.c.stalls,
            jobs.c.fencing_token,
            jobs.c.isolated,
            jobs.c.losses,
            jobs.c.lease_owner,
        )
        .where(jobs.c.status == "running", jobs.c.lease_expires_at < now)
        .order_by(jobs.c.id)
        .limit(limit)
    )
    if postgres:
        query = query.with_for_update(skip_locked=True)
    rows = (await conn.execute(query)).all()
    if not rows:
        return []
    # What each dead worker held: the expired jobs of this pass, those not expired yet
    # (claimed after its last heartbeat, so their leases end a little later), and those an
    # earlier pass reaped already (their rows in job_attempts name the same owner).
    owners = {row.lease_owner for row in rows}
    held: dict[str, int] = defaultdict(int)
    for owner, n in await conn.execute(
        select(jobs.c.lease_owner, func.count())
        .where(jobs.c.status == "running", jobs.c.lease_owner.in_(owners))
        .group_by(jobs.c.lease_owner)
    ):
        held[owner] += int(n)
    for owner, n in await conn.execute(
        select(job_attempts.c.owner, func.count(job_attempts.c.job_id.distinct()))
        .where(job_attempts.c.owner.in_(owners))
        .group_by(job_attempts.c.owner)
    ):
        held[owner] += int(n)
    out = []
    history = []
    for row in rows:
        job = ClaimedJob(
            id=int(row.id),
            kind=row.kind,
            run_id=row.run_id,
            payload=row.payload,
            attempts=int(row.attempts),
            max_attempts=int(row.max_attempts),
            stalls=int(row.stalls),
            fencing_token=int(row.fencing_token),
            isolated=bool(row.isolated),
        )
        beside = max(0, held.get(row.lease_owner, 1) - 1)
        alone = job.isolated or beside == 0
        stalls = job.stalls + 1 if alone else job.stalls
        losses = int(row.losses) + (0 if alone else 1)
        values: dict[str, Any] = {
            "stalls": stalls,
            "losses": losses,
            "isolated": False,
            "lease_owner": None,
            "lease_expires_at": None,
            "updated_at": now,
        }
        retry_at: datetime | None = None
        if alone and stalls >= max_stalls:
            outcome = "dead"
            reason = (
                f"dead-lettered: its worker died {stalls} times while it ran alone "
                f"(crashed, killed or hung; {losses} more time(s) beside other jobs)"
            )
            values.update(status="dead", finished_at=now, error=reason)
        else:
            outcome = "stalled" if alone else "lost"
            retry_at = now + timedelta(seconds=backoff(stalls + losses, retry_base, retry_max))
            reason = (
                f"its worker died while it ran alone (stall {stalls} of {max_stalls})"
                if alone
                else f"its worker died while it ran beside {beside} other job(s): "
                "retried alone, no stall counted"
            )
            values.update(status=SUSPECT, run_at=retry_at)
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
            out.append(
                Reaped(
                    job_id=job.id,
                    run_id=job.run_id,
                    dead=outcome == "dead",
                    stalls=stalls,
                    outcome=outcome,
                    beside=beside,
                    attempt=job.attempts,
                    retry_at=retry_at,
                    reason=reason,
                )
            )
            history.append(
                _attempt_row(
                    job, outcome, reason, retry_at, now, owner=row.lease_owner, beside=beside
                )
            )
    if history:
        await conn.execute(insert(job_attempts), history)
    return out


async def request_cancel(conn: Conn, job_id: int) -> str | None:
    """Cancel a queued job at once, or flag a running one; returns the job's status after."""
    now = utcnow()
    done = await conn.execute(
        update(jobs)
        .where(jobs.c.id == job_id, jobs.c.status.in_(("queued", SUSPECT)))
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


async def attempts_of(
    conn: Conn, *, run_ids: Sequence[str] = (), job_id: int | None = None
) -> list[dict[str, Any]]:
    """The attempts that ended without success, of these runs' jobs or of one job, in order."""
    query = select(job_attempts).order_by(job_attempts.c.id)
    if job_id is not None:
        query = query.where(job_attempts.c.job_id == job_id)
    else:
        query = query.where(job_attempts.c.run_id.in_(list(run_ids)))
    return [row_dict(r) for r in await conn.execute(query)]


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
    rows = await conn.execute(select(jobs.c.status, func.count()).group_by(jobs.c.status))
    return {str(status): int(n) for status, n in rows}
