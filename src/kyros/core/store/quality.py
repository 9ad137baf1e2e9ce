"""``quality_assessments`` (a critic's verdicts) and ``escalation_workflows`` (what followed)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, insert, or_, select

from kyros.core.store.bridge import Conn
from kyros.core.store.schema import escalation_workflows, quality_assessments, row_dict, utcnow


async def add_assessment(
    conn: Conn,
    *,
    run_id: str,
    target_run_id: str | None,
    score: int,
    verdict: str,
    summary: str,
    findings: list[dict[str, Any]],
    model: str | None,
) -> dict[str, Any]:
    row = {
        "run_id": run_id,
        "target_run_id": target_run_id,
        "score": score,
        "verdict": verdict,
        "summary": summary,
        "findings": findings,
        "model": model,
        "created_at": utcnow(),
    }
    result = await conn.execute(
        insert(quality_assessments).values(**row).returning(quality_assessments.c.id)
    )
    return {"id": int(result.scalar_one()), **row}


async def assessments_for(conn: Conn, run_ids: list[str]) -> list[dict[str, Any]]:
    """Assessments made by, or about, any of ``run_ids``; oldest first."""
    if not run_ids:
        return []
    query = (
        select(quality_assessments)
        .where(
            or_(
                quality_assessments.c.run_id.in_(run_ids),
                quality_assessments.c.target_run_id.in_(run_ids),
            )
        )
        .order_by(quality_assessments.c.id)
    )
    return [row_dict(r) for r in await conn.execute(query)]


async def add_escalation(
    conn: Conn,
    *,
    run_id: str,
    action: str,
    reason: str,
    assessment_id: int | None = None,
    child_run_id: str | None = None,
    detail: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Record the next step of a run's escalation; steps are numbered from 1 per run."""
    last = await conn.execute(
        select(func.max(escalation_workflows.c.step)).where(escalation_workflows.c.run_id == run_id)
    )
    row = {
        "run_id": run_id,
        "step": int(last.scalar() or 0) + 1,
        "action": action,
        "reason": reason,
        "assessment_id": assessment_id,
        "child_run_id": child_run_id,
        "detail": detail or {},
        "created_at": utcnow(),
    }
    result = await conn.execute(
        insert(escalation_workflows).values(**row).returning(escalation_workflows.c.id)
    )
    return {"id": int(result.scalar_one()), **row}


async def escalations_for(conn: Conn, run_id: str) -> list[dict[str, Any]]:
    query = (
        select(escalation_workflows)
        .where(escalation_workflows.c.run_id == run_id)
        .order_by(escalation_workflows.c.step)
    )
    return [row_dict(r) for r in await conn.execute(query)]
