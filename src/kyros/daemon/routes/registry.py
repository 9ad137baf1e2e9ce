"""The service registry: the nodes sharing this database, and draining one."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path

from kyros.core.app import Core
from kyros.daemon.routes.deps import core
from kyros.protocol import Node, NodeList

router = APIRouter(prefix="/v1/registry", tags=["registry"])

NodeId = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._-]+$")]


def _node(row: dict[str, Any], now: datetime) -> Node:
    age = max(0.0, (now - row["last_heartbeat"]).total_seconds())
    return Node.model_validate({**row, "heartbeat_age": round(age, 3)})


@router.get("", response_model=NodeList)
async def list_nodes(c: Annotated[Core, Depends(core)]) -> NodeList:
    """Every node that joined this database (up, draining or down), live ones first."""
    rows, now = await c.nodes.list()
    return NodeList(nodes=[_node(r, now) for r in rows], now=now)


@router.get("/{node_id}", response_model=Node)
async def show_node(node_id: NodeId, c: Annotated[Core, Depends(core)]) -> Node:
    """One node; 404 for an id no node ever had."""
    row, now = await c.nodes.get(node_id)
    return _node(row, now)


@router.post("/{node_id}/drain", response_model=Node)
async def drain_node(node_id: NodeId, c: Annotated[Core, Depends(core)]) -> Node:
    """Drain a node: it claims no new jobs and finishes its running ones (state
    ``draining``). The node learns it at its next heartbeat; 409 if it is down."""
    row, now = await c.nodes.drain(node_id)
    return _node(row, now)
