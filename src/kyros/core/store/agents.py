"""Configured agents. The built-in ones are created on first start and may be edited, not
removed."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, insert, select, update

from kyros.core.store.bridge import Conn
from kyros.core.store.schema import agents, row_dict, utcnow

#: Commands an ``auto`` agent runs without asking (the first words must match an entry).
DEFAULT_ALLOWED_COMMANDS = [
    "pytest",
    "python -m pytest",
    "python -m unittest",
    "ls",
    "cat",
    "git status",
    "git diff",
    "git log",
    "make test",
    "npm test",
    "cargo test",
    "go test",
]
DEFAULT_LIMITS: dict[str, Any] = {
    "max_turns": 40,
    "max_tool_calls": 120,
    "wall_seconds": 1800,
    "budget": None,
    "allowed_commands": DEFAULT_ALLOWED_COMMANDS,
}
DEFAULT_ESCALATION: dict[str, Any] = {"max_revisions": 2, "stronger_model": None, "human": True}

BUILTIN: tuple[dict[str, Any], ...] = (
    {"name": "planner", "role": "plan", "approval_policy": "read-only", "tools": ["read"]},
    {
        # Writes land in the run's own worktree, never in the user's checkout, so they need no
        # approval; commands outside the allow-list do.
        "name": "implementer",
        "role": "implement",
        "approval_policy": "auto",
        "tools": ["read", "write", "command"],
    },
    {"name": "critic", "role": "critic", "approval_policy": "read-only", "tools": ["read"]},
)


def _defaults(spec: dict[str, Any]) -> dict[str, Any]:
    now = utcnow()
    return {
        "model": None,
        "system_prompt": None,
        "limits": dict(DEFAULT_LIMITS),
        "escalation": dict(DEFAULT_ESCALATION),
        "paused": False,
        "status": "idle",
        "current_run": None,
        "builtin": False,
        "created_at": now,
        "updated_at": now,
        **spec,
    }


async def ensure_builtin(conn: Conn) -> None:
    existing = set((await conn.execute(select(agents.c.name))).scalars())
    for spec in BUILTIN:
        if spec["name"] not in existing:
            await conn.execute(insert(agents).values(**_defaults({**spec, "builtin": True})))


async def list_agents(conn: Conn) -> list[dict[str, Any]]:
    return [row_dict(r) for r in await conn.execute(select(agents).order_by(agents.c.name))]


async def get(conn: Conn, name: str) -> dict[str, Any] | None:
    row = (await conn.execute(select(agents).where(agents.c.name == name))).first()
    return row_dict(row) if row else None


async def add(conn: Conn, spec: dict[str, Any]) -> dict[str, Any]:
    row = _defaults(spec)
    await conn.execute(insert(agents).values(**row))
    return row


async def edit(conn: Conn, name: str, values: dict[str, Any]) -> None:
    await conn.execute(
        update(agents).where(agents.c.name == name).values(updated_at=utcnow(), **values)
    )


async def remove(conn: Conn, name: str) -> None:
    await conn.execute(delete(agents).where(agents.c.name == name))


async def set_status(conn: Conn, name: str, status: str, current_run: str | None) -> None:
    await conn.execute(
        update(agents)
        .where(agents.c.name == name)
        .values(status=status, current_run=current_run, updated_at=utcnow())
    )
