"""Conversation memory: ``threads`` and their ``messages``.

A message row is never rewritten or deleted: compaction adds a ``summary`` message that stands
for the messages before it, so the original conversation always stays readable.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, func, insert, outerjoin, select

from kyros.core.ids import new_id
from kyros.core.store.bridge import Conn
from kyros.core.store.schema import messages, row_dict, runs, threads, utcnow

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


async def get(conn: Conn, thread_id: str) -> dict[str, Any] | None:
    row = (await conn.execute(select(threads).where(threads.c.id == thread_id))).first()
    return row_dict(row) if row else None


async def list_threads(conn: Conn, *, limit: int = 50) -> list[dict[str, Any]]:
    """Threads, the most recently active first, each with its message count and last activity
    (``active_at``: its newest message, else its creation)."""
    active = func.coalesce(func.max(messages.c.created_at), threads.c.created_at)
    query = (
        select(
            threads,
            func.count(messages.c.id).label("messages_count"),
            func.max(messages.c.created_at).label("last_message_at"),
        )
        .select_from(outerjoin(threads, messages, messages.c.thread_id == threads.c.id))
        .group_by(threads.c.id, threads.c.title, threads.c.created_at, threads.c.updated_at)
        .order_by(active.desc(), threads.c.id.desc())
        .limit(limit)
    )
    out = []
    for row in await conn.execute(query):
        item = row_dict(row)
        item["active_at"] = item.pop("last_message_at") or item["created_at"]
        out.append(item)
    return out


async def runs_of(conn: Conn, thread_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    """The runs of each thread, oldest first: ``{thread id: [run summary …]}``."""
    if not thread_ids:
        return {}
    query = (
        select(
            runs.c.id,
            runs.c.kind,
            runs.c.status,
            runs.c.goal,
            runs.c.model,
            runs.c.parent_id,
            runs.c.thread_id,
            runs.c.created_at,
        )
        .where(runs.c.thread_id.in_(thread_ids))
        .order_by(runs.c.created_at, runs.c.id)
    )
    out: dict[str, list[dict[str, Any]]] = {t: [] for t in thread_ids}
    for row in await conn.execute(query):
        item = row_dict(row)
        out[str(item.pop("thread_id"))].append(item)
    return out
