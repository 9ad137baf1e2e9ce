"""Configured agents. The built-in ones are created on first start."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select, update

from kyros.core.store.bridge import Conn
from kyros.core.store.schema import agents, row_dict, utcnow

BUILTIN: tuple[dict[str, Any], ...] = (
    {"name": "planner", "role": "plan", "approval_policy": "read-only", "tools": ["read"]},
    {
        "name": "implementer",
        "role": "implement",
        "approval_policy": "ask",
        "tools": ["read", "write", "command"],
    },
    {"name": "critic", "role": "critic", "approval_policy": "read-only", "tools": ["read"]},
)


async def ensure_builtin(conn: Conn) -> None:
    existing = set((await conn.execute(select(agents.c.name))).scalars())
    now = utcnow()
    for spec in BUILTIN:
        if spec["name"] in existing:
            continue
        await conn.execute(
            insert(agents).values(
                **spec,
                model=None,
                system_prompt=None,
                limits={},
                status="idle",
                current_run=None,
                builtin=True,
                created_at=now,
                updated_at=now,
            )
        )


async def list_agents(conn: Conn) -> list[dict[str, Any]]:
    return [row_dict(r) for r in await conn.execute(select(agents).order_by(agents.c.name))]


async def set_status(conn: Conn, name: str, status: str, current_run: str | None) -> None:
    await conn.execute(
        update(agents)
        .where(agents.c.name == name)
        .values(status=status, current_run=current_run, updated_at=utcnow())
    )
