"""Agents: list, read, add, change, remove, and their live status."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from kyros.core.app import Core
from kyros.daemon.routes.deps import core
from kyros.protocol import Agent, AgentList, AgentSpec, AgentStatus, AgentStatusList

router = APIRouter(prefix="/v1/agents", tags=["agents"])

AgentName = Annotated[str, Path(max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]


@router.get("/status", response_model=AgentStatusList)
async def agents_status(c: Annotated[Core, Depends(core)]) -> AgentStatusList:
    """Each agent's live status (idle, busy, paused, offline) and the run it works on."""
    return AgentStatusList(agents=[AgentStatus.model_validate(a) for a in await c.agent_status()])


@router.get("", response_model=AgentList)
async def list_agents(c: Annotated[Core, Depends(core)]) -> AgentList:
    """Every agent with its effective settings and live status."""
    return AgentList(agents=[Agent.model_validate(a) for a in await c.agent_status()])


@router.post("", response_model=Agent, status_code=201)
async def add_agent(body: AgentSpec, c: Annotated[Core, Depends(core)]) -> Agent:
    """Add an agent; unset fields take their defaults."""
    spec = body.model_dump(exclude_none=True)
    return Agent.model_validate(await c.agents.add(spec))


@router.get("/{name}", response_model=Agent)
async def get_agent(name: AgentName, c: Annotated[Core, Depends(core)]) -> Agent:
    """One agent's effective settings."""
    return Agent.model_validate(await c.agents.get(name))


@router.patch("/{name}", response_model=Agent)
async def edit_agent(name: AgentName, body: AgentSpec, c: Annotated[Core, Depends(core)]) -> Agent:
    """Change some of an agent's settings; limits and escalation merge key by key."""
    changes = body.model_dump(exclude_none=True, exclude_unset=True)
    return Agent.model_validate(await c.agents.edit(name, changes))


@router.delete("/{name}", status_code=204)
async def remove_agent(name: AgentName, c: Annotated[Core, Depends(core)]) -> None:
    """Remove an agent (built-in agents can be edited or paused, not removed)."""
    await c.agents.remove(name)
