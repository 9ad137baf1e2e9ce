"""The cost ledger: one ``usage`` row per model call."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select

from kyros.core.store.bridge import Conn
from kyros.core.store.schema import row_dict, usage, utcnow


async def record(conn: Conn, **values: Any) -> None:
    await conn.execute(insert(usage).values(created_at=utcnow(), **values))


async def for_run(conn: Conn, run_id: str) -> list[dict[str, Any]]:
    rows = await conn.execute(select(usage).where(usage.c.run_id == run_id).order_by(usage.c.id))
    return [row_dict(r) for r in rows]
