"""Crash attribution and release on stop in the queue itself, on SQLite and PostgreSQL (ADR 0026,
ADR 0027): who is charged a stall, that a suspect runs alone, and that a released attempt is
given back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import update

from kyros.core.jobs.handlers import JobContext
from kyros.core.store import jobs as jobs_repo
from kyros.core.store.schema import jobs
from tests.conftest import loaded_for


async def _expire_and_reap(core: Any, max_stalls: int = 3) -> list[jobs_repo.Reaped]:
    await asyncio.sleep(0.05)  # the 0.01 s leases are in the past
    async with core.store.write() as conn:
        return await jobs_repo.reap(
            conn, max_stalls=max_stalls, retry_base=0, retry_max=0, postgres=core.store.is_postgres
        )


async def test_a_crash_beside_others_makes_suspects_and_charges_no_stall(core: Any) -> None:
    await core.pool.stop()  # drive the repository directly
    pg = core.store.is_postgres
    async with core.store.write() as conn:
        ids = [await jobs_repo.enqueue(conn, "noop", {"i": i}) for i in range(3)]
        claimed = await jobs_repo.claim(conn, "node-a", 3, 0.01, postgres=pg)
    assert [j.id for j in claimed] == ids and not any(j.isolated for j in claimed)
    reaped = await _expire_and_reap(core)
    assert [(r.job_id, r.outcome, r.stalls, r.beside, r.dead) for r in reaped] == [
        (i, "lost", 0, 2, False) for i in ids
    ]
    for job_id in ids:
        job = await core.job(job_id)
        assert (job["status"], job["stalls"], job["losses"]) == ("suspect", 0, 1)
    async with core.store.write() as conn:
        # A suspect is never claimed beside others; only alone, and then it says so.
        assert await jobs_repo.claim(conn, "node-b", 10, 30, postgres=pg) == []
        alone = await jobs_repo.claim_suspect(conn, "node-b", 0.01, postgres=pg)
    assert alone is not None and alone.id == ids[0] and alone.isolated and alone.attempts == 2
    # Its worker dies again while it runs alone: now the crash is its own.
    reaped = await _expire_and_reap(core)
    assert [(r.job_id, r.outcome, r.stalls) for r in reaped] == [(ids[0], "stalled", 1)]
    job = await core.job(ids[0])
    assert (job["status"], job["stalls"], job["losses"], job["isolated"]) == (
        "suspect",
        1,
        1,
        False,
    )
    async with core.store.read() as conn:
        history = await jobs_repo.attempts_of(conn, job_id=ids[0])
    assert [(h["attempt"], h["outcome"], h["isolated"], h["beside"]) for h in history] == [
        (1, "lost", False, 2),
        (2, "stalled", True, 0),
    ]
    assert "beside 2 other job(s)" in history[0]["error"]


async def test_a_job_alone_on_its_worker_is_charged_and_dead_lettered_with_its_reason(
    core: Any,
) -> None:
    await core.pool.stop()
    pg = core.store.is_postgres
    async with core.store.write() as conn:
        job_id = await jobs_repo.enqueue(conn, "noop", {})
        await jobs_repo.claim(conn, "node-a", 1, 0.01, postgres=pg)
    assert [r.outcome for r in await _expire_and_reap(core, max_stalls=2)] == ["stalled"]
    async with core.store.write() as conn:
        assert await jobs_repo.claim_suspect(conn, "node-b", 0.01, postgres=pg) is not None
    [dead] = await _expire_and_reap(core, max_stalls=2)
    assert dead.dead and dead.outcome == "dead" and dead.stalls == 2
    job = await core.job(job_id)
    assert job["status"] == "dead" and "2 times while it ran alone" in job["error"]


async def test_the_pool_runs_a_suspect_alone(core: Any) -> None:
    running: set[int] = set()
    seen_with: dict[int, set[int]] = {}  # job id -> the jobs running at any time beside it

    async def track(ctx: JobContext) -> None:
        me = ctx.job.id
        for other in running:
            seen_with.setdefault(other, set()).add(me)
        seen_with.setdefault(me, set()).update(running)
        running.add(me)
        try:
            await asyncio.sleep(float(ctx.job.payload["seconds"]))
        finally:
            running.discard(me)

    core.registry.register("track", track)
    async with core.store.write() as conn:
        suspect = await jobs_repo.enqueue(conn, "track", {"seconds": 0.3})
        await conn.execute(update(jobs).where(jobs.c.id == suspect).values(status="suspect"))
        others = [await jobs_repo.enqueue(conn, "track", {"seconds": 0.4}) for _ in range(8)]
    core.pool.wake()
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        states = [(await core.job(i))["status"] for i in [suspect, *others]]
        if all(s == "succeeded" for s in states):
            break
        assert asyncio.get_running_loop().time() < deadline, states
        await asyncio.sleep(0.05)
    assert seen_with.get(suspect, set()) == set()  # nothing ran beside it
    assert any(seen_with.get(i) for i in others)  # the others ran side by side
    job = await core.job(suspect)
    assert job["attempts"] == 1 and job["isolated"] is False


async def _read_after_stop(
    core: Any, ids: list[int]
) -> tuple[dict[int, Any], dict[int, list[dict[str, Any]]]]:
    """The jobs and their histories, through a store of our own (the core's is closed)."""
    from kyros.core.store.engine import Store

    store = Store(core.loaded.database_url)
    try:
        async with store.read() as conn:
            rows = {i: await jobs_repo.get(conn, i) for i in ids}
            history = {i: await jobs_repo.attempts_of(conn, job_id=i) for i in ids}
    finally:
        await store.close()
    return rows, history


@pytest.fixture
async def short_grace_core(xdg: dict[str, str], db_url: str) -> AsyncIterator[Any]:
    """A started core whose stop gives running jobs 0.5 s."""
    from kyros.core.app import Core

    c = Core(
        loaded_for(
            xdg,
            database_url=db_url,
            heartbeat_seconds=0.2,
            reaper_seconds=0.2,
            lease_seconds=2.0,
            poll_seconds=0.2,
            shutdown_grace_seconds=0.5,
        )
    )
    await c.start(warm_backend=False)
    try:
        yield c
    finally:
        if c.pool.alive:
            await c.stop()


async def test_a_job_released_at_stop_gives_its_attempt_back(short_grace_core: Any) -> None:
    core = short_grace_core
    started: dict[str, asyncio.Event] = {"sleeps": asyncio.Event(), "polite": asyncio.Event()}
    stopped_politely: list[bool] = []

    async def sleeps(ctx: JobContext) -> None:
        started["sleeps"].set()
        await asyncio.sleep(60)  # never reaches a checkpoint: cancelled after the grace

    async def polite(ctx: JobContext) -> None:
        started["polite"].set()
        try:
            while True:
                ctx.checkpoint()  # stops here once the daemon is stopping
                await asyncio.sleep(0.01)
        finally:
            stopped_politely.append(ctx.stopping)

    core.registry.register("sleeps", sleeps)
    core.registry.register("polite", polite)
    async with core.store.write() as conn:
        cut = await jobs_repo.enqueue(conn, "sleeps", {})
        kind = await jobs_repo.enqueue(conn, "polite", {})
    core.pool.wake()
    await asyncio.wait_for(started["polite"].wait(), 10)
    await asyncio.wait_for(started["sleeps"].wait(), 10)
    async with core.store.write() as conn:
        suspect = await jobs_repo.enqueue(conn, "sleeps", {})
        await conn.execute(update(jobs).where(jobs.c.id == suspect).values(status="suspect"))
    await asyncio.sleep(0.5)  # the pool's probe (every 0.2 s) has seen it by now
    assert core.pool.busy == 2
    await core.stop()
    assert stopped_politely == [True]
    rows, history = await _read_after_stop(core, [cut, kind, suspect])
    for job_id in (cut, kind):
        row = rows[job_id]
        assert row is not None
        assert (row["status"], row["attempts"], row["stalls"]) == ("queued", 0, 0), row
        assert [h["outcome"] for h in history[job_id]] == ["released"]
    # The suspect never ran: two others were running, and it waits to run alone.
    assert rows[suspect] is not None and rows[suspect]["status"] == "suspect"


async def test_a_suspect_released_at_stop_stays_a_suspect(short_grace_core: Any) -> None:
    core = short_grace_core
    started = asyncio.Event()

    async def sleeps(ctx: JobContext) -> None:
        assert ctx.job.isolated
        started.set()
        await asyncio.sleep(60)

    core.registry.register("sleeps", sleeps)
    async with core.store.write() as conn:
        job_id = await jobs_repo.enqueue(conn, "sleeps", {})
        await conn.execute(update(jobs).where(jobs.c.id == job_id).values(status="suspect"))
    core.pool.wake()
    await asyncio.wait_for(started.wait(), 10)
    await core.stop()
    rows, history = await _read_after_stop(core, [job_id])
    row = rows[job_id]
    assert row is not None
    # Not proven innocent by a shutdown: still waiting to run alone, its attempt given back.
    assert (row["status"], row["attempts"], row["isolated"]) == ("suspect", 0, False)
    assert [(h["outcome"], h["isolated"]) for h in history[job_id]] == [("released", True)]


async def test_a_dead_workers_jobs_reaped_in_two_passes_are_all_suspects(core: Any) -> None:
    """The last of a dead worker's jobs to be reaped does not look alone: the jobs an earlier
    pass reaped still count as its neighbours."""
    await core.pool.stop()
    pg = core.store.is_postgres
    async with core.store.write() as conn:
        first = await jobs_repo.enqueue(conn, "noop", {})
        second = await jobs_repo.enqueue(conn, "noop", {})
        await jobs_repo.claim(conn, "node-a", 1, 0.01, postgres=pg)
        await jobs_repo.claim(conn, "node-a", 1, 1.0, postgres=pg)  # after its last heartbeat
    assert [(r.job_id, r.outcome, r.beside) for r in await _expire_and_reap(core)] == [
        (first, "lost", 1)
    ]
    await asyncio.sleep(1.0)
    assert [(r.job_id, r.outcome, r.beside) for r in await _expire_and_reap(core)] == [
        (second, "lost", 1)
    ]
    assert (await core.job(second))["stalls"] == 0
