"""Agents: who does a run's work, with which model, tools, approval policy and limits.

Rows store only what the user set; :class:`Profile` fills the rest from the defaults, so a
database made before a setting existed still yields a complete agent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kyros.core.store import agents as agents_repo
from kyros.core.store.engine import Store
from kyros.errors import Conflict, InvalidInput, NotFound

POLICIES = ("read-only", "ask", "auto", "full")
TOOL_CLASSES = ("read", "write", "command")
#: The tools an agent of each role gets when it is added without ``--tools``.
ROLE_TOOLS = {
    "plan": ("read",),
    "implement": ("read", "write", "command"),
    "critic": ("read",),
    "custom": ("read",),
}
#: The agent a run of each kind uses when none is named.
DEFAULT_AGENT = {"plan": "planner", "implement": "implementer", "critic": "critic"}


@dataclass(frozen=True)
class Profile:
    """An agent's effective configuration."""

    name: str
    role: str
    model: str | None
    system_prompt: str | None
    tools: frozenset[str]
    policy: str
    limits: dict[str, Any]
    escalation: dict[str, Any]
    paused: bool

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Profile:
        return cls(
            name=row["name"],
            role=row["role"],
            model=row.get("model"),
            system_prompt=row.get("system_prompt"),
            tools=frozenset(row.get("tools") or ()),
            policy=row["approval_policy"],
            limits={**agents_repo.DEFAULT_LIMITS, **(row.get("limits") or {})},
            escalation={**agents_repo.DEFAULT_ESCALATION, **(row.get("escalation") or {})},
            paused=bool(row.get("paused")),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "role": self.role,
            "model": self.model,
            "system_prompt": self.system_prompt,
            "tools": sorted(self.tools),
            "approval_policy": self.policy,
            "limits": self.limits,
            "escalation": self.escalation,
            "paused": self.paused,
        }


class AgentService:
    """Create, read, change and remove agents."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def list(self) -> list[dict[str, Any]]:
        async with self.store.read() as conn:
            rows = await agents_repo.list_agents(conn)
        return [{**Profile.from_row(r).as_dict(), "builtin": r["builtin"]} for r in rows]

    async def profile(self, name: str) -> Profile:
        async with self.store.read() as conn:
            row = await agents_repo.get(conn, name)
        if row is None:
            raise NotFound(f"no agent named {name!r}; `kyros agents list` shows them")
        return Profile.from_row(row)

    async def get(self, name: str) -> dict[str, Any]:
        async with self.store.read() as conn:
            row = await agents_repo.get(conn, name)
        if row is None:
            raise NotFound(f"no agent named {name!r}; `kyros agents list` shows them")
        return {**Profile.from_row(row).as_dict(), "builtin": row["builtin"]}

    async def add(self, spec: dict[str, Any]) -> dict[str, Any]:
        name = spec.get("name")
        if not name:
            raise InvalidInput("an agent needs a name")
        _check(spec)
        values = {k: v for k, v in spec.items() if v is not None}
        values.setdefault("role", "custom")
        # A role's tools follow what the role does: an implementer must be able to change files.
        values.setdefault("tools", list(ROLE_TOOLS.get(values["role"], ("read",))))
        values.setdefault("approval_policy", "ask")
        async with self.store.write() as conn:
            if await agents_repo.get(conn, name) is not None:
                raise Conflict(f"an agent named {name!r} exists; use `kyros agents edit`")
            await agents_repo.add(conn, values)
        return await self.get(name)

    async def edit(self, name: str, changes: dict[str, Any]) -> dict[str, Any]:
        _check(changes)
        if changes.get("name") not in (None, name):
            raise InvalidInput("an agent cannot be renamed; add a new one instead")
        values = {k: v for k, v in changes.items() if v is not None and k != "name"}
        async with self.store.write() as conn:
            row = await agents_repo.get(conn, name)
            if row is None:
                raise NotFound(f"no agent named {name!r}")
            # Nested settings merge: `--max-turns 5` keeps the agent's other limits.
            for key in ("limits", "escalation"):
                if key in values:
                    values[key] = {**(row.get(key) or {}), **values[key]}
            if values:
                await agents_repo.edit(conn, name, values)
        return await self.get(name)

    async def remove(self, name: str) -> None:
        async with self.store.write() as conn:
            row = await agents_repo.get(conn, name)
            if row is None:
                raise NotFound(f"no agent named {name!r}")
            if row["builtin"]:
                raise Conflict(f"{name!r} is built in; it can be edited or paused, not removed")
            await agents_repo.remove(conn, name)


def _check(spec: dict[str, Any]) -> None:
    # The daemon validates the wire shape; this guards in-process callers the same way.
    policy = spec.get("approval_policy")
    if policy is not None and policy not in POLICIES:
        raise InvalidInput(f"approval policy must be one of {', '.join(POLICIES)}")
    tools = spec.get("tools")
    if tools is not None and not set(tools) <= set(TOOL_CLASSES):
        raise InvalidInput(f"tools must be among {', '.join(TOOL_CLASSES)}")
