"""The cost ledger's views: totals grouped by run, agent, model, project, day, provider or
outcome, and the individual model calls."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from kyros.core.app import Core
from kyros.core.store import runs as runs_repo
from kyros.core.store import usage as usage_repo
from kyros.daemon.routes.deps import core
from kyros.errors import InvalidInput
from kyros.protocol import UsageBy, UsageCall, UsageCallList, UsageGroup, UsageReport

router = APIRouter(prefix="/v1/usage", tags=["usage"])

_WHEN_HELP = (
    "ISO-8601 date (a UTC calendar day) or timestamp (UTC unless it carries an offset); "
    "the window is since <= call < until, and a bare date as `until` includes that day."
)
Since = Annotated[str | None, Query(max_length=64, description=_WHEN_HELP)]
Until = Annotated[str | None, Query(max_length=64, description=_WHEN_HELP)]
RunFilter = Annotated[str | None, Query(max_length=64, description="Only this run's calls.")]


def parse_instant(name: str, value: str | None, *, end_of_day: bool = False) -> datetime | None:
    """``value`` as an aware UTC datetime: a date means its UTC midnight (the next one with
    ``end_of_day``, so an ``until`` date covers the whole day), a naive timestamp UTC."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        day = date.fromisoformat(text)
    except ValueError:
        pass
    else:
        start = datetime.combine(day, time(), tzinfo=UTC)
        return start + timedelta(days=1) if end_of_day else start
    try:
        instant = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(
            f"{name}: expected an ISO-8601 date (2026-11-01) or timestamp (2026-11-01T09:30:00Z)"
        ) from None
    return instant.replace(tzinfo=UTC) if instant.tzinfo is None else instant.astimezone(UTC)


@router.get("", response_model=UsageReport)
async def usage_report(
    c: Annotated[Core, Depends(core)],
    by: UsageBy = UsageBy.MODEL,
    since: Since = None,
    until: Until = None,
    run: RunFilter = None,
) -> UsageReport:
    """Model calls, tokens and cost grouped by one key, most expensive first (``day``: UTC
    calendar days, in order), with a total. ``failed`` counts calls neither ok nor pending."""
    start = parse_instant("since", since)
    end = parse_instant("until", until, end_of_day=True)
    async with c.store.read() as conn:
        report = await usage_repo.summarize(conn, by=by.value, since=start, until=end, run_id=run)
        if by == UsageBy.RUN:
            # A pipeline's row adds up its stages' calls (each call counts once in the total).
            keys = [g["key"] for g in report["groups"] if g["key"]]
            report = usage_repo.roll_up_children(report, await runs_repo.parents_of(conn, keys))
    return UsageReport(
        by=by,
        since=start,
        until=end,
        run=run,
        groups=[UsageGroup.model_validate(g) for g in report["groups"]],
        total=UsageGroup.model_validate(report["total"]),
    )


@router.get("/calls", response_model=UsageCallList)
async def usage_calls(
    c: Annotated[Core, Depends(core)],
    since: Since = None,
    until: Until = None,
    run: RunFilter = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> UsageCallList:
    """Individual model calls, newest first."""
    start = parse_instant("since", since)
    end = parse_instant("until", until, end_of_day=True)
    async with c.store.read() as conn:
        rows = await usage_repo.recent(conn, since=start, until=end, limit=limit, run_id=run)
    return UsageCallList(calls=[UsageCall.model_validate(r) for r in rows])
