"""Model calls a dead daemon left in flight, written to the ledger when their run resumes.

A call's ledger row is written when it ends, so a ``kill -9`` mid-call would leave no trace of
it. Rather than a write before every call, the run's event log already says when a call
started: ``model.request`` (an agent's turn), ``progress`` with phase ``model`` (plan, critic,
a summary), ``model.retry`` and ``model.fallback`` (the next attempt, written after the failed
one's row). When a run's job is delivered again to a run still ``running``, the attempt before
died (its lease ran out): if the newest such marker has no ledger row at or after it, that
call was in flight and is recorded as ``lost`` with an unknown cost. On PostgreSQL a capped
call also left its ``pending`` reservation: it becomes ``lost`` at its worst case.
"""

from __future__ import annotations

from typing import Any

from kyros.core.store import events as events_repo
from kyros.core.store import ledger
from kyros.core.store.bridge import Conn

#: Events written just before a model call (or its next attempt) starts.
MARKERS = ("model.request", "progress", "model.retry", "model.fallback")


def _call_start(event: dict[str, Any]) -> str | None:
    """The model a marker event says a call started with; None for other progress events."""
    data = event.get("data") or {}
    if event["type"] == "progress":
        return str(data["model"]) if data.get("phase") == "model" and data.get("model") else None
    if event["type"] == "model.fallback":
        return str(data.get("to") or "") or None
    return str(data.get("model") or "") or None


async def record_lost_calls(
    conn: Conn, run: dict[str, Any], role: str | None, provider_of: Any = None
) -> int:
    """Inside a write transaction: ledger rows for the calls ``run``'s dead attempt left in
    flight; returns how many. ``provider_of(model)`` names a model's provider (or None)."""
    lost = await ledger.lose_pending(conn, run["id"])
    if lost:
        return lost
    for event in await events_repo.latest_of(conn, run["id"], MARKERS):
        model = _call_start(event)
        if model is None:
            continue
        if await ledger.settled_since(conn, run["id"], event["created_at"]):
            return 0
        await ledger.record_lost(
            conn,
            run_id=run["id"],
            agent=run.get("agent"),
            project=run["workspace"],
            model=model,
            provider=provider_of(model) if provider_of else None,
            role=role,
        )
        return 1
    return 0
