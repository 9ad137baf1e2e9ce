"""The store on SQLite and PostgreSQL: migrations match the schema, UTC datetimes, no lost
updates, ordered per-run event sequences."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from kyros.core.ids import new_id
from kyros.core.store import events as events_repo
from kyros.core.store import migrate
from kyros.core.store import runs as runs_repo
from kyros.core.store.engine import Store
from kyros.core.store.schema import metadata
from kyros.errors import StoreUnavailable


async def _run(store: Store) -> str:
    run_id = new_id("r")
    async with store.write() as conn:
        await runs_repo.insert_run(conn, id=run_id, kind="plan", goal="g", workspace="/tmp")
    return run_id


async def test_migrations_create_exactly_the_schema(db_url: str) -> None:
    status = await migrate.upgrade(db_url)
    assert status.up_to_date and status.current == migrate.head_revision()
    store = Store(db_url)
    try:
        async with store.read() as conn:
            diff = await conn.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
            )
    finally:
        await store.close()
    assert diff == []
    again = await migrate.upgrade(db_url)  # idempotent
    assert again.current == status.current


async def test_upgrading_from_0001_keeps_every_row(db_url: str) -> None:
    """A database made by an older kyros keeps its runs, events and agents through the upgrade."""
    from sqlalchemy import func, select, text

    from kyros.core.store.schema import events, runs, usage

    await migrate.upgrade(db_url, "0001")
    old = Store(db_url)
    try:
        async with old.write() as conn:
            # Written as 0001 knew the table: without the columns 0002 adds.
            await conn.execute(
                text(
                    "INSERT INTO runs (id, kind, status, goal, workspace, tokens_in, tokens_out,"
                    " cost, last_seq, created_at, updated_at) VALUES ('r_old', 'plan',"
                    " 'succeeded', 'g', '/tmp', 1, 2, 0.5, 1, :now, :now)"
                ),
                {"now": datetime(2026, 1, 1, tzinfo=UTC).replace(tzinfo=None)},
            )
            await conn.execute(
                text(
                    "INSERT INTO events (run_id, seq, type, data, created_at)"
                    " VALUES ('r_old', 1, 'run.queued', '{}', :now)"
                ),
                {"now": datetime(2026, 1, 1)},
            )
            await conn.execute(
                text(
                    "INSERT INTO usage (run_id, model, tokens_in, tokens_out, cached_tokens, cost,"
                    " outcome, created_at) VALUES ('r_old', 'm', 1, 2, 0, 0.25, 'ok', :now)"
                ),
                {"now": datetime(2026, 1, 1)},
            )
    finally:
        await old.close()
    status = await migrate.upgrade(db_url)
    assert status.current == migrate.head_revision()
    new = Store(db_url)
    try:
        async with new.read() as conn:
            run = await runs_repo.get(conn, "r_old")
            count = (await conn.execute(select(func.count()).select_from(events))).scalar()
            params = (await conn.execute(select(runs.c.params))).scalars().all()
            ledger = [dict(r._mapping) for r in await conn.execute(select(usage))]
    finally:
        await new.close()
    assert run is not None and run["cost"] == 0.5 and run["pending"] is None
    assert count == 1 and params == [None]
    assert len(ledger) == 1 and ledger[0]["cost"] == 0.25 and ledger[0]["reserved"] == 0


async def test_datetimes_come_back_utc_aware(store: Store) -> None:
    run_id = await _run(store)
    async with store.read() as conn:
        run = await runs_repo.get(conn, run_id)
    assert run is not None and run["created_at"].tzinfo is not None
    assert run["created_at"].utcoffset().total_seconds() == 0
    assert abs((datetime.now(UTC) - run["created_at"]).total_seconds()) < 60


async def test_concurrent_increments_are_not_lost(store: Store) -> None:
    run_id = await _run(store)

    async def add() -> None:
        async with store.write() as conn:
            await runs_repo.add_usage_totals(conn, run_id, 10, 1, 0.5)

    await asyncio.gather(*(add() for _ in range(20)))
    async with store.read() as conn:
        run = await runs_repo.get(conn, run_id)
    assert run is not None and (run["tokens_in"], run["tokens_out"], run["cost"]) == (200, 20, 10.0)


async def test_a_write_waits_for_another_process_without_blocking_the_loop(
    tmp_path: Path,
) -> None:
    """SQLite: while another process holds the write lock, a write waits for it in a worker
    thread (never on the event loop, never failing at once) and lands once it is released."""
    path = str(tmp_path / "locked.db")
    db_url = f"sqlite+aiosqlite:///{path}"
    await migrate.upgrade(db_url)
    store = Store(db_url)
    try:
        await _wait_for_the_other_process(store, path)
    finally:
        await store.close()


async def _wait_for_the_other_process(store: Store, path: str) -> None:
    run_id = await _run(store)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys, time\n"
            f"c = sqlite3.connect({path!r}, isolation_level=None)\n"
            "c.execute('BEGIN IMMEDIATE'); print('held', flush=True); time.sleep(0.8)\n"
            "c.execute('COMMIT')",
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.create_task(tick())
        started = asyncio.get_running_loop().time()
        async with store.write() as conn:
            await runs_repo.add_usage_totals(conn, run_id, 5, 1, 0.25)
        waited = asyncio.get_running_loop().time() - started
        ticker.cancel()
    finally:
        holder.wait(10)
    assert waited >= 0.3  # it did wait for the other process ...
    assert ticks >= 10  # ... and the loop ran meanwhile
    with sqlite3.connect(path) as check:
        assert check.execute("SELECT tokens_in FROM runs WHERE id = ?", (run_id,)).fetchone() == (
            5,
        )


async def test_concurrent_event_appends_get_gapless_unique_seqs(store: Store) -> None:
    run_id = await _run(store)

    async def append(i: int) -> int:
        async with store.write() as conn:
            return int((await events_repo.append(conn, run_id, "t", {"i": i}))["seq"])

    seqs = await asyncio.gather(*(append(i) for i in range(50)))
    assert sorted(seqs) == list(range(1, 51))
    async with store.read() as conn:
        stored = await events_repo.after(conn, run_id, 0)
    assert [e["seq"] for e in stored] == list(range(1, 51))


async def test_a_failed_transaction_leaves_no_event(store: Store) -> None:
    run_id = await _run(store)
    with pytest.raises(RuntimeError):
        async with store.write() as conn:
            await events_repo.append(conn, run_id, "t", {})
            raise RuntimeError("boom")
    async with store.write() as conn:
        event = await events_repo.append(conn, run_id, "t", {})
    assert event["seq"] == 1


async def test_prepared_and_sqlalchemy_statements_share_one_transaction(store: Store) -> None:
    """A ledger row (a prepared statement on SQLite) and a statement through SQLAlchemy commit
    or roll back together, in either order, and a rolled-back write leaves the next one a
    working connection."""
    from sqlalchemy import select

    from kyros.core.store import ledger
    from kyros.core.store.schema import usage

    run_id = await _run(store)
    row = {"run_id": run_id, "model": "m", **ledger.attempt_values(None, "ok", None)}
    with pytest.raises(RuntimeError):
        async with store.write() as conn:
            await ledger.record(conn, **row)
            await runs_repo.add_usage_totals(conn, run_id, 10, 1, 1.0)
            raise RuntimeError("boom")
    async with store.write() as conn:
        await runs_repo.add_usage_totals(conn, run_id, 5, 1, 0.5)
        await ledger.record(conn, **row)
    async with store.write() as conn:
        await ledger.record(conn, **row)
        await ledger.add_run_totals(conn, run_id, 2, 1, 0.25)
    async with store.read() as conn:
        run = await runs_repo.get(conn, run_id)
        rows = (await conn.execute(select(usage.c.id).where(usage.c.run_id == run_id))).all()
    assert run is not None and (run["tokens_in"], run["cost"]) == (7, 0.75)
    assert len(rows) == 2


async def test_unreachable_database_is_a_clear_error() -> None:
    store = Store("postgresql+asyncpg://nobody@127.0.0.1:1/none")
    try:
        with pytest.raises(StoreUnavailable, match="database"):
            await store.ping()
    finally:
        await store.close()


def test_revision_head_names_the_newest_migration() -> None:
    from kyros.core.store import revision

    assert migrate.head_revision() == revision.HEAD


async def test_current_revision_without_alembic(db_url: str) -> None:
    from kyros.core.store import revision

    store = Store(db_url)
    try:
        async with store.read() as conn:
            assert await revision.current(conn) is None  # never migrated
        await migrate.upgrade(db_url)
        async with store.read() as conn:
            assert await revision.current(conn) == revision.HEAD
    finally:
        await store.close()
