"""The append-only event log of each run. Sequence numbers start at 1 and never skip."""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, insert, select, update

from kyros.core.store.bridge import Conn
from kyros.core.store.schema import events, row_dict, runs, utcnow

# Built once: a statement object keeps its cache key, so each append only binds values.
_NEXT_SEQ = (
    update(runs)
    .where(runs.c.id == bindparam("e_run"))
    .values(last_seq=runs.c.last_seq + 1)
    .returning(runs.c.last_seq)
)
_INSERT = insert(events)
_AFTER = (
    select(events.c.run_id, events.c.seq, events.c.type, events.c.data, events.c.created_at)
    .where(events.c.run_id == bindparam("e_run"), events.c.seq > bindparam("e_after"))
    .order_by(events.c.seq)
    .limit(bindparam("e_limit"))
)


async def append(conn: Conn, run_id: str, type_: str, data: dict[str, Any]) -> dict[str, Any]:
    """Append an event inside the caller's write transaction; returns the stored event.

    The per-run counter lives on the run row, so the increment and the insert commit together:
    two writers can never draw the same ``seq`` and a rolled-back event leaves no gap.
    """
    seq = (await conn.execute(_NEXT_SEQ, {"e_run": run_id})).scalar_one()
    now = utcnow()
    await conn.execute(
        _INSERT, {"run_id": run_id, "seq": seq, "type": type_, "data": data, "created_at": now}
    )
    return {"run_id": run_id, "seq": seq, "type": type_, "data": data, "created_at": now}


async def after(conn: Conn, run_id: str, after_seq: int, limit: int = 1000) -> list[dict[str, Any]]:
    """Events of ``run_id`` with ``seq > after_seq``, in order."""
    rows = await conn.execute(_AFTER, {"e_run": run_id, "e_after": after_seq, "e_limit": limit})
    return [row_dict(r) for r in rows]


async def latest_of(
    conn: Conn, run_id: str, types: tuple[str, ...], limit: int = 20
) -> list[dict[str, Any]]:
    """The newest events of ``run_id`` among ``types``, newest first, at most ``limit``."""
    rows = await conn.execute(
        select(events.c.seq, events.c.type, events.c.data, events.c.created_at)
        .where(events.c.run_id == run_id, events.c.type.in_(types))
        .order_by(events.c.seq.desc())
        .limit(limit)
    )
    return [row_dict(r) for r in rows]
