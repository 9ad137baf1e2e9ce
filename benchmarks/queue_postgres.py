"""No-op jobs through the real queue on PostgreSQL, against pgqueuer on the same server.

kyros: as in ``queue_sqlite`` (N jobs enqueued with ``enqueue_many``, a :class:`Core` drains
them, timed until ``counts`` shows all ``succeeded``), at workers=4 and 16, each on a fresh
database. Anchor: pgqueuer processing the same N no-op jobs in its own fresh database: its
schema installed with ``Queries.install()``, the jobs enqueued in batches, one
``QueueManager`` with its default batch size on one asyncpg connection, timed from ``run()`` to
its return after the N-th job (pgqueuer writes completions through a buffer that is flushed on
exit, so the time includes the last writes). Target: kyros ≥ pgqueuer.
"""

from __future__ import annotations

import asyncio
import time

from tests.support.postgres import pg_problem

from benchmarks.common import (
    Result,
    log,
    pg_database,
    pg_dsn,
    skipped,
    temp_base,
    xdg_env,
)
from benchmarks.queue_sqlite import WORKERS, N, kyros_queue

CHUNK = 500
ANCHOR = "pgqueuer"
TARGET_TEXT = "ratio ≥ 1.0"


async def _kyros(env: dict[str, str], workers: int) -> float:
    async with pg_database() as name:
        url = f"postgresql+asyncpg://{pg_dsn(name).split('://', 1)[1]}"
        return await kyros_queue(url, env, workers)


async def _pgqueuer(n: int = N) -> float:
    import asyncpg
    from pgqueuer import AsyncpgDriver, Queries, QueueManager

    async with pg_database() as name:
        dsn = pg_dsn(name)
        setup = await asyncpg.connect(dsn)
        try:
            queries = Queries(AsyncpgDriver(setup))
            await queries.install()
            for start in range(0, n, CHUNK):
                size = min(n, start + CHUNK) - start
                await queries.enqueue(["noop"] * size, [None] * size, [0] * size)
        finally:
            await setup.close()

        conn = await asyncpg.connect(dsn)
        try:
            qm = QueueManager(Queries(AsyncpgDriver(conn)))
            done = 0

            @qm.entrypoint("noop")
            async def noop(job: object) -> None:
                nonlocal done
                done += 1
                if done >= n:
                    qm.shutdown.set()

            t0 = time.perf_counter()
            await asyncio.wait_for(qm.run(), timeout=120)
            elapsed = time.perf_counter() - t0
        finally:
            await conn.close()
    if done < n:
        raise RuntimeError(f"pgqueuer processed {done} of {n} jobs")
    return n / elapsed


def run() -> list[Result]:
    problem = pg_problem()
    if problem:
        return [
            skipped("queue_postgres", f"PostgreSQL unreachable: {problem}", ANCHOR, TARGET_TEXT)
        ]
    anchor: float | None = None
    note = ""
    try:
        import pgqueuer  # noqa: F401
    except ImportError:
        note = "pgqueuer not installed (pip install pgqueuer): anchor missing"
    else:
        anchor = asyncio.run(_pgqueuer())
        log(f"pgqueuer: {anchor:,.0f} jobs/s")
    results = []
    with temp_base("kbp") as base:
        env = xdg_env(base)
        for workers in WORKERS:
            rate = asyncio.run(_kyros(env, workers))
            log(f"kyros workers={workers}: {rate:,.0f} jobs/s")
            ok = None if anchor is None else rate >= anchor
            results.append(
                Result(
                    f"queue_postgres: noop jobs, workers={workers}",
                    rate,
                    "jobs/s",
                    ANCHOR,
                    anchor,
                    TARGET_TEXT,
                    ok,
                    note or f"N={N}",
                )
            )
    return results
