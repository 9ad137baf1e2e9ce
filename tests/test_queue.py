"""The durable job queue on SQLite and PostgreSQL: claims, fencing, retries, reaping, cancel."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from kyros.core.jobs.handlers import JobContext
from kyros.core.store import jobs as jobs_repo
from kyros.core.store.jobs import Settlement
from kyros.core.store.schema import utcnow


async def _wait_status(core: Any, job_id: int, statuses: set[str], timeout: float = 10) -> dict:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        job = await core.job(job_id)
        if job["status"] in statuses:
            return job
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"job {job_id} stuck in {job['status']}: {job}")
        await asyncio.sleep(0.02)


async def test_claim_is_exclusive_and_fenced(core: Any) -> None:
    await core.pool.stop()  # drive the repository directly
    async with core.store.write() as conn:
        ids = [await jobs_repo.enqueue(conn, "noop", {"i": i}) for i in range(10)]
    async with core.store.write() as conn:
        first = await jobs_repo.claim(conn, "a", 6, 30, postgres=core.store.is_postgres)
    async with core.store.write() as conn:
        second = await jobs_repo.claim(conn, "b", 6, 30, postgres=core.store.is_postgres)
    assert [j.id for j in first] == ids[:6]
    assert [j.id for j in second] == ids[6:]
    assert all(j.fencing_token == 1 and j.attempts == 1 for j in first + second)

    # A settlement with a stale token changes nothing.
    stale = first[0]
    async with core.store.write() as conn:
        await conn.execute(
            jobs_repo.jobs.update().where(jobs_repo.jobs.c.id == stale.id).values(fencing_token=7)
        )
        await jobs_repo.settle(conn, [Settlement(job=stale, status="succeeded")])
    assert (await core.job(stale.id))["status"] == "running"


async def test_concurrent_claimers_never_share_a_job(core: Any) -> None:
    await core.pool.stop()
    async with core.store.write() as conn:
        await jobs_repo.enqueue_many(conn, "noop", [{"i": i} for i in range(200)])

    async def claimer(owner: str) -> list[int]:
        got: list[int] = []
        while True:
            async with core.store.write() as conn:
                batch = await jobs_repo.claim(conn, owner, 7, 30, postgres=core.store.is_postgres)
            if not batch:
                return got
            got += [j.id for j in batch]

    results = await asyncio.gather(*(claimer(f"w{i}") for i in range(5)))
    flat = [i for r in results for i in r]
    assert len(flat) == 200 and len(set(flat)) == 200


async def test_jobs_run_and_retry_with_backoff(core: Any) -> None:
    calls: list[tuple[int, float]] = []

    async def flaky(ctx: JobContext) -> str:
        calls.append((ctx.job.attempts, asyncio.get_running_loop().time()))
        if ctx.job.attempts < 3:
            raise RuntimeError("transient")
        return "ok"

    core.registry.register("flaky", flaky)
    async with core.store.write() as conn:
        job_id = await jobs_repo.enqueue(conn, "flaky", {}, max_attempts=3)
    core.pool.wake()
    job = await _wait_status(core, job_id, {"succeeded", "failed"})
    assert job["status"] == "succeeded" and job["attempts"] == 3
    assert [a for a, _ in calls] == [1, 2, 3]
    # Backoff: base 0.05 s doubling, jittered to [0.5, 1]x: the second gap is not shorter
    # than half the first's lower bound.
    assert calls[1][1] - calls[0][1] >= 0.02


async def test_failure_after_max_attempts_is_final(core: Any) -> None:
    async def broken(ctx: JobContext) -> None:
        raise ValueError("always")

    core.registry.register("broken", broken)
    async with core.store.write() as conn:
        job_id = await jobs_repo.enqueue(conn, "broken", {}, max_attempts=2)
    core.pool.wake()
    job = await _wait_status(core, job_id, {"failed"})
    assert job["attempts"] == 2 and "ValueError: always" in job["error"]


async def test_expired_lease_is_requeued_then_dead_lettered(core: Any) -> None:
    await core.pool.stop()
    async with core.store.write() as conn:
        job_id = await jobs_repo.enqueue(conn, "noop", {})
    for stall in (1, 2, 3):
        async with core.store.write() as conn:
            if stall == 1:
                claimed = await jobs_repo.claim(
                    conn, "dead-worker", 1, 0.01, postgres=core.store.is_postgres
                )
            else:
                # Once stalled it is a suspect: only an isolated claim takes it (ADR 0026).
                assert (
                    await jobs_repo.claim(conn, "w", 5, 30, postgres=core.store.is_postgres) == []
                )
                one = await jobs_repo.claim_suspect(
                    conn, "dead-worker", 0.01, postgres=core.store.is_postgres
                )
                claimed = [one] if one else []
            assert [j.id for j in claimed] == [job_id]
            # The reaper only sees it once the lease is in the past; make the retry due now.
        await asyncio.sleep(0.05)
        async with core.store.write() as conn:
            reaped = await jobs_repo.reap(
                conn, max_stalls=3, retry_base=0, retry_max=0, postgres=core.store.is_postgres
            )
        assert [(r.job_id, r.stalls, r.dead) for r in reaped] == [(job_id, stall, stall == 3)]
    job = await core.job(job_id)
    assert job["status"] == "dead" and "3 times" in job["error"]


async def test_heartbeat_keeps_a_long_job_alive(core: Any) -> None:
    async def slow(ctx: JobContext) -> str:
        await asyncio.sleep(3.0)  # longer than the 2 s lease; heartbeats every 0.2 s
        return "done"

    core.registry.register("slow", slow)
    async with core.store.write() as conn:
        job_id = await jobs_repo.enqueue(conn, "slow", {})
    core.pool.wake()
    job = await _wait_status(core, job_id, {"succeeded", "failed", "queued"}, timeout=10)
    if job["status"] == "queued":
        job = await _wait_status(core, job_id, {"succeeded", "failed"}, timeout=10)
    assert job["status"] == "succeeded" and job["stalls"] == 0 and job["attempts"] == 1


async def test_cancel_queued_and_running(core: Any) -> None:
    started = asyncio.Event()

    async def waits(ctx: JobContext) -> None:
        started.set()
        await asyncio.sleep(60)

    core.registry.register("waits", waits)
    async with core.store.write() as conn:
        future = await jobs_repo.enqueue(conn, "noop", {}, run_at=utcnow() + timedelta(hours=1))
        running = await jobs_repo.enqueue(conn, "waits", {})
    core.pool.wake()
    await asyncio.wait_for(started.wait(), 10)
    async with core.store.write() as conn:
        assert await jobs_repo.request_cancel(conn, future) == "cancelled"
        assert await jobs_repo.request_cancel(conn, running) == "running"
    # The heartbeat notices the request and stops the handler.
    job = await _wait_status(core, running, {"cancelled"})
    assert job["finished_at"] is not None


@pytest.mark.parametrize("n", [300])
async def test_many_noop_jobs_all_complete_once(core: Any, n: int) -> None:
    async with core.store.write() as conn:
        await jobs_repo.enqueue_many(conn, "noop", [{"i": i} for i in range(n)])
    core.pool.wake()
    for _ in range(200):
        async with core.store.read() as conn:
            counts = await jobs_repo.counts(conn)
        if counts.get("succeeded") == n:
            break
        await asyncio.sleep(0.05)
    assert counts == {"succeeded": n}
    async with core.store.read() as conn:
        rows = await jobs_repo.list_jobs(conn, limit=n)
    assert {r["attempts"] for r in rows} == {1}
