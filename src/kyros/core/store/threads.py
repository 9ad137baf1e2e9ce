"""Conversation memory: ``threads`` and their ``messages``.

A message row is never rewritten or deleted: compaction adds a ``summary`` message that stands
for the messages before it, so the original conversation always stays readable.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, func, insert, select

from kyros.core.ids import new_id
from kyros.core.store.bridge import Conn
from kyros.core.store.schema import messages, row_dict, threads, utcnow

#: Roles a message may have: the chat roles, plus ``summary`` (a compaction of earlier ones).
ROLES = frozenset({"system", "user", "assistant", "tool", "summary"})


async def create(conn: Conn, title: str | None = None) -> str:
    thread_id = new_id("t")
    now = utcnow()
    await conn.execute(
        insert(threads).values(
            id=thread_id, title=(title or "")[:200], created_at=now, updated_at=now
        )
    )
    return thread_id


async def append(
    conn: Conn,
    thread_id: str,
    role: str,
    content: str,
    *,
    run_id: str | None = None,
    meta: dict[str, Any] | None = None,
) -> int:
    """Add one message; returns its id (ids order a thread)."""
    if role not in ROLES:
        raise ValueError(f"unknown message role {role!r}")
    result = await conn.execute(
        insert(messages)
        .values(
            thread_id=thread_id,
            run_id=run_id,
            role=role,
            content=content,
            meta=meta or {},
            created_at=utcnow(),
        )
        .returning(messages.c.id)
    )
    return int(result.scalar_one())


_HISTORY = select(messages).where(messages.c.thread_id == bindparam("t_id")).order_by(messages.c.id)


async def history(conn: Conn, thread_id: str) -> list[dict[str, Any]]:
    """Every message of a thread, oldest first."""
    return [row_dict(r) for r in await conn.execute(_HISTORY, {"t_id": thread_id})]


async def count(conn: Conn, thread_id: str) -> int:
    result = await conn.execute(
        select(func.count()).select_from(messages).where(messages.c.thread_id == thread_id)
    )
    return int(result.scalar_one())
