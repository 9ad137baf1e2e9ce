"""No-op jobs through the real queue on SQLite, against a raw sqlite3 claim loop.

kyros: N ``noop`` jobs are enqueued with ``jobs_repo.enqueue_many``, then a :class:`Core` starts
and the clock runs until ``jobs_repo.counts`` shows all N ``succeeded``; at workers=4 (the
default) and 16. Anchor: the least a durable SQLite queue can do per job — a claim
``UPDATE … RETURNING`` and a completion ``UPDATE``, each its own transaction, through the
stdlib ``sqlite3`` module on a table of the same shape in WAL mode. Target: ≥ 5,000 jobs/s.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

from benchmarks.common import Result, log, temp_base, xdg_env

N = 5000
CHUNK = 500
WORKERS = (4, 16)
TARGET = 5000.0
POLL = 0.1  # only to notice the end; the time comes from finished_at

RAW_SCHEMA = """
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind VARCHAR(64) NOT NULL,
    run_id VARCHAR(32),
    payload JSON NOT NULL,
    status VARCHAR(16) NOT NULL,
    priority INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    stalls INTEGER NOT NULL,
    max_attempts INTEGER NOT NULL,
    run_at DATETIME NOT NULL,
    lease_owner VARCHAR(64),
    lease_expires_at DATETIME,
    fencing_token BIGINT NOT NULL,
    cancel_requested BOOLEAN NOT NULL,
    result JSON,
    error TEXT,
    created_at DATETIME NOT NULL,
    updated_at DATETIME NOT NULL,
    finished_at DATETIME
);
CREATE INDEX ix_jobs_status_priority_id ON jobs (status, priority, id);
CREATE INDEX ix_jobs_status_lease_expires_at ON jobs (status, lease_expires_at);
"""


def raw_sqlite(path: Path, n: int = N) -> float:
    """jobs/s of a bare claim-then-complete loop, one transaction per statement."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # as the kyros store sets it
        db.executescript(RAW_SCHEMA)
        now = "2025-01-01 00:00:00.000000"
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO jobs (kind, payload, status, priority, attempts, stalls, max_attempts, "
            "run_at, fencing_token, cancel_requested, created_at, updated_at) "
            "VALUES ('noop', ?, 'queued', 0, 0, 0, 3, ?, 0, 0, ?, ?)",
            [(f'{{"i": {i}}}', now, now, now) for i in range(n)],
        )
        db.execute("COMMIT")
        done = 0
        t0 = time.perf_counter()
        while True:
            db.execute("BEGIN IMMEDIATE")
            row = db.execute(
                "UPDATE jobs SET status='running' WHERE id=(SELECT id FROM jobs "
                "WHERE status='queued' ORDER BY priority, id LIMIT 1) RETURNING id"
            ).fetchone()
            db.execute("COMMIT")
            if row is None:
                break
            db.execute("BEGIN IMMEDIATE")
            db.execute("UPDATE jobs SET status='succeeded' WHERE id=?", (row[0],))
            db.execute("COMMIT")
            done += 1
        elapsed = time.perf_counter() - t0
    finally:
        db.close()
    if done != n:
        raise RuntimeError(f"raw loop finished {done} of {n} jobs")
    return n / elapsed


async def kyros_queue(url: str, env: dict[str, str], workers: int, n: int = N) -> float:
    """jobs/s of the real worker pool draining ``n`` queued no-op jobs.

    The clock starts before ``Core.start`` and stops at the newest ``finished_at`` the pool
    wrote, so how often this loop polls ``counts`` to see the end changes nothing measured.
    """
    from sqlalchemy import func, select

    from kyros import settings
    from kyros.core.app import Core
    from kyros.core.store import jobs as jobs_repo
    from kyros.core.store import migrate
    from kyros.core.store.schema import jobs, utcnow

    loaded = settings.load({"database_url": url, "workers": workers, "poll_seconds": 0.05}, env=env)
    await migrate.upgrade(url)
    core = Core(loaded, migrate_on_start=False)
    try:
        for start in range(0, n, CHUNK):
            async with core.store.write() as conn:
                await jobs_repo.enqueue_many(
                    conn, "noop", [{"i": i} for i in range(start, min(n, start + CHUNK))]
                )
        started = utcnow()
        deadline = time.monotonic() + 120
        await core.start(warm_backend=False)
        while True:
            await asyncio.sleep(POLL)
            async with core.store.read() as conn:
                counts = await jobs_repo.counts(conn)
            if counts.get("succeeded", 0) >= n:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"queue not drained in 120 s: {counts}")
            if counts.get("failed") or counts.get("dead"):
                raise RuntimeError(f"jobs failed: {counts}")
        async with core.store.read() as conn:
            finished = (await conn.execute(select(func.max(jobs.c.finished_at)))).scalar_one()
    finally:
        await core.stop()
    return n / (finished - started).total_seconds()


def run() -> list[Result]:
    with temp_base("kbq") as base:
        env = xdg_env(base)
        anchor = raw_sqlite(base / "raw.db")
        log(f"raw sqlite3 claim loop: {anchor:,.0f} jobs/s")
        results = []
        for workers in WORKERS:
            url = f"sqlite+aiosqlite:///{base}/kyros-w{workers}.db"
            rate = asyncio.run(kyros_queue(url, env, workers))
            log(f"kyros workers={workers}: {rate:,.0f} jobs/s")
            results.append(
                Result(
                    f"queue_sqlite: noop jobs, workers={workers}",
                    rate,
                    "jobs/s",
                    "raw sqlite3 claim loop",
                    anchor,
                    f"≥ {TARGET:,.0f} jobs/s",
                    rate >= TARGET,
                    f"N={N}",
                )
            )
    return results
