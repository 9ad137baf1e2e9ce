"""The service registry's SQL: register, heartbeat, drain, deregister, reap expired nodes.

A node's row is a lease, like a job's (``jobs.py``): each heartbeat moves ``expires_at``
forward, and any live node's reaper marks a row whose lease ran out ``down``. Unlike the job
queue, the time on PostgreSQL is the DATABASE's (``now()``), for writing and for judging, so
nodes whose clocks disagree still agree on who expired (ADR 0028). On SQLite every node is on
the machine of the file, whose clock is the one clock there is.

Each registration bumps ``incarnation``; heartbeats and the clean stop name theirs, so a node
that was reaped while it hung, and whose id another process took meanwhile, writes nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Interval, and_, func, literal, select, update
from sqlalchemy.sql.elements import ColumnElement

from kyros.core.store.bridge import Conn
from kyros.core.store.schema import row_dict, runs, service_registry, utcnow

UP, DRAINING, DOWN = "up", "draining", "down"
#: States of a node that holds its lease (or held it until it expired unnoticed).
LIVE = (UP, DRAINING)


def _now(postgres: bool) -> Any:
    """The registry's clock: the database's on PostgreSQL, this machine's on SQLite."""
    return func.now() if postgres else utcnow()


def _later(postgres: bool, seconds: float) -> Any:
    if postgres:
        return func.now() + literal(timedelta(seconds=seconds), Interval())
    return utcnow() + timedelta(seconds=seconds)


async def clock(conn: Conn, *, postgres: bool) -> datetime:
    """The registry's clock now (what ``expires_at`` is compared with)."""
    if not postgres:
        return utcnow()
    value: datetime = (await conn.execute(select(func.now()))).scalar_one()
    return value


def _live(postgres: bool) -> ColumnElement[bool]:
    return and_(service_registry.c.state.in_(LIVE), service_registry.c.expires_at >= _now(postgres))


async def get(conn: Conn, node_id: str, *, lock: bool = False) -> dict[str, Any] | None:
    """One node's row; ``lock``: held until the transaction ends (PostgreSQL)."""
    query = select(service_registry).where(service_registry.c.id == node_id)
    if lock:
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    return row_dict(row) if row else None


async def list_nodes(conn: Conn) -> list[dict[str, Any]]:
    """Every node that ever joined, live ones first, then by id."""
    rows = await conn.execute(select(service_registry).order_by(service_registry.c.id))
    found = [row_dict(r) for r in rows]
    found.sort(key=lambda n: (n["state"] == DOWN, n["id"]))
    return found


async def live_nodes(conn: Conn, *, postgres: bool) -> list[dict[str, Any]]:
    """Nodes whose lease has not expired by the registry's clock."""
    rows = await conn.execute(
        select(service_registry).where(_live(postgres)).order_by(service_registry.c.id)
    )
    return [row_dict(r) for r in rows]


def is_live(node: dict[str, Any], now: datetime) -> bool:
    """Whether ``node`` (a row) holds its lease at ``now`` (a time of :func:`clock`)."""
    return node["state"] in LIVE and node["expires_at"] >= now


async def register(
    conn: Conn, node: dict[str, Any], *, expiry_seconds: float, postgres: bool
) -> int:
    """Write ``node``'s row as ``up`` with a fresh lease; returns its new incarnation.

    The caller has read the row with ``lock=True`` in the same transaction and decided the id
    is free (no live node holds it, or the one that did is known to be gone).
    """
    now = _now(postgres)
    values = {
        **node,
        "state": UP,
        "started_at": now,
        "last_heartbeat": now,
        "expires_at": _later(postgres, expiry_seconds),
        "stopped_at": None,
        "reason": None,
    }
    previous = (
        await conn.execute(
            select(service_registry.c.incarnation).where(service_registry.c.id == node["id"])
        )
    ).scalar()
    if previous is None:
        await conn.execute(service_registry.insert().values(incarnation=1, **values))
        return 1
    await conn.execute(
        update(service_registry)
        .where(service_registry.c.id == node["id"])
        .values(incarnation=int(previous) + 1, **values)
    )
    return int(previous) + 1


async def heartbeat(
    conn: Conn,
    node_id: str,
    incarnation: int,
    *,
    load: int,
    capacity: int,
    expiry_seconds: float,
    postgres: bool,
) -> str | None:
    """Renew the lease of this incarnation of ``node_id``; returns its state (``up`` or
    ``draining``: a drain asked elsewhere is learnt here), or None when the row is no longer
    this incarnation's or was marked down (the node must register again)."""
    row = (
        await conn.execute(
            update(service_registry)
            .where(
                service_registry.c.id == node_id,
                service_registry.c.incarnation == incarnation,
                service_registry.c.state.in_(LIVE),
            )
            .values(
                last_heartbeat=_now(postgres),
                expires_at=_later(postgres, expiry_seconds),
                load=load,
                capacity=capacity,
            )
            .returning(service_registry.c.state)
        )
    ).first()
    return None if row is None else str(row.state)


async def set_state(
    conn: Conn,
    node_id: str,
    state: str,
    *,
    postgres: bool,
    incarnation: int | None = None,
    reason: str | None = None,
) -> dict[str, Any] | None:
    """Move a live node to ``state`` (``draining`` or ``down``); returns the row after, or None
    if no live row matched (unknown id, already down, or another incarnation)."""
    query = update(service_registry).where(
        service_registry.c.id == node_id, service_registry.c.state.in_(LIVE)
    )
    if incarnation is not None:
        query = query.where(service_registry.c.incarnation == incarnation)
    values: dict[str, Any] = {"state": state}
    if state == DOWN:
        values.update(stopped_at=_now(postgres), load=0, reason=reason)
    elif reason is not None:
        values["reason"] = reason
    result = await conn.execute(query.values(**values).returning(service_registry.c.id))
    if result.first() is None:
        return None
    return await get(conn, node_id)


async def reap(conn: Conn, *, postgres: bool) -> list[str]:
    """Mark ``down`` every live node whose lease expired by the registry's clock; returns
    their ids."""
    query = (
        update(service_registry)
        .where(
            service_registry.c.state.in_(LIVE),
            service_registry.c.expires_at < _now(postgres),
        )
        .values(
            state=DOWN,
            load=0,
            stopped_at=_now(postgres),
            reason="its heartbeat expired (crashed, killed, hung or cut off from the database)",
        )
        .returning(service_registry.c.id)
    )
    return sorted(str(r.id) for r in await conn.execute(query))


async def note_claims(conn: Conn, node_id: str, run_ids: list[str]) -> None:
    """Record ``node_id`` as the node running these runs (their jobs were just claimed)."""
    if run_ids:
        await conn.execute(update(runs).where(runs.c.id.in_(run_ids)).values(node=node_id))
