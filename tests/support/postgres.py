"""The PostgreSQL server the tests and benchmarks use: probing it and creating databases."""

from __future__ import annotations

import asyncio
import os

PG_ADMIN_DSN = os.environ.get("KYROS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def pg_problem() -> str | None:
    """None if PostgreSQL answers at PG_ADMIN_DSN, else what went wrong."""

    async def probe() -> None:
        import asyncpg

        conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=3)
        await conn.close()

    try:
        asyncio.run(probe())
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


async def pg_admin(sql: str) -> None:
    """Run one administrative statement (CREATE/DROP DATABASE) on the server."""
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()
