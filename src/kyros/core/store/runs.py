"""Reading and writing ``runs`` rows."""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, bindparam, insert, or_, select, update

from kyros.core.store.bridge import Conn, first_row
from kyros.core.store.schema import row_dict, runs, utcnow


async def insert_run(conn: Conn, **values: Any) -> dict[str, Any]:
    now = utcnow()
    row = {
        "status": "queued",
        "tokens_in": 0,
        "tokens_out": 0,
        "cost": 0.0,
        "last_seq": 0,
        "created_at": now,
        "updated_at": now,
        **values,
    }
    await conn.execute(insert(runs).values(**row))
    return row


_GET = select(runs).where(runs.c.id == bindparam("r_id"))  # built once: keeps its cache key


async def get(conn: Conn, run_id: str) -> dict[str, Any] | None:
    # GET /v1/runs/{id}, the API's hottest read: on SQLite a statement compiled once.
    return await first_row(conn, _GET, {"r_id": run_id})


async def get_for_update(conn: Conn, run_id: str) -> dict[str, Any] | None:
    """Read a run and lock its row until the transaction ends (PostgreSQL; SQLite's write lock
    already covers the whole transaction)."""
    row = (await conn.execute(select(runs).where(runs.c.id == run_id).with_for_update())).first()
    return row_dict(row) if row else None


async def list_runs(
    conn: Conn,
    *,
    limit: int = 50,
    status: str | None = None,
    kind: str | None = None,
    before: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Runs newest first; with ``before`` (a run), only those listed after it: the next page."""
    query = select(runs).order_by(runs.c.created_at.desc(), runs.c.id.desc()).limit(limit)
    if before is not None:
        # Keyset paging on the list's own order: runs created in the same instant are told
        # apart by id, so no run is skipped or listed twice between pages.
        at = before["created_at"]
        query = query.where(
            or_(runs.c.created_at < at, and_(runs.c.created_at == at, runs.c.id < before["id"]))
        )
    if status:
        query = query.where(runs.c.status == status)
    if kind:
        query = query.where(runs.c.kind == kind)
    return [row_dict(r) for r in await conn.execute(query)]


async def children(conn: Conn, parent_id: str) -> list[dict[str, Any]]:
    """A run's child runs, oldest first."""
    query = select(runs).where(runs.c.parent_id == parent_id).order_by(runs.c.created_at, runs.c.id)
    return [row_dict(r) for r in await conn.execute(query)]


async def parents_of(conn: Conn, run_ids: list[str]) -> dict[str, str]:
    """``{run id: parent run id}`` for those of ``run_ids`` that are a run's stages."""
    if not run_ids:
        return {}
    query = select(runs.c.id, runs.c.parent_id).where(
        runs.c.id.in_(run_ids), runs.c.parent_id.is_not(None)
    )
    return {str(r.id): str(r.parent_id) for r in await conn.execute(query)}


async def set_fields(conn: Conn, run_id: str, **values: Any) -> None:
    await conn.execute(
        update(runs).where(runs.c.id == run_id).values(updated_at=utcnow(), **values)
    )


async def add_usage_totals(
    conn: Conn, run_id: str, tokens_in: int, tokens_out: int, cost: float
) -> None:
    """Atomic increments: concurrent calls of one run never lose each other's usage."""
    await conn.execute(
        update(runs)
        .where(runs.c.id == run_id)
        .values(
            tokens_in=runs.c.tokens_in + tokens_in,
            tokens_out=runs.c.tokens_out + tokens_out,
            cost=runs.c.cost + cost,
            updated_at=utcnow(),
        )
    )
