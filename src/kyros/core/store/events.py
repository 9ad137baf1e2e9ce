"""The append-only event log of each run. Sequence numbers start at 1 and never skip."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select, update

from kyros.core.store.bridge import Conn
from kyros.core.store.schema import events, row_dict, runs, utcnow


async def append(conn: Conn, run_id: str, type_: str, data: dict[str, Any]) -> dict[str, Any]:
    """Append an event inside the caller's write transaction; returns the stored event.

    The per-run counter lives on the run row, so the increment and the insert commit together:
    two writers can never draw the same ``seq`` and a rolled-back event leaves no gap.
    """
    seq = (
        await conn.execute(
            update(runs)
            .where(runs.c.id == run_id)
            .values(last_seq=runs.c.last_seq + 1)
            .returning(runs.c.last_seq)
        )
    ).scalar_one()
    now = utcnow()
    await conn.execute(
        insert(events).values(run_id=run_id, seq=seq, type=type_, data=data, created_at=now)
    )
    return {"run_id": run_id, "seq": seq, "type": type_, "data": data, "created_at": now}


async def after(conn: Conn, run_id: str, after_seq: int, limit: int = 1000) -> list[dict[str, Any]]:
    """Events of ``run_id`` with ``seq > after_seq``, in order."""
    rows = await conn.execute(
        select(events.c.run_id, events.c.seq, events.c.type, events.c.data, events.c.created_at)
        .where(events.c.run_id == run_id, events.c.seq > after_seq)
        .order_by(events.c.seq)
        .limit(limit)
    )
    return [row_dict(r) for r in rows]
