"""The cost ledger: one ``usage`` row per model call, and its views (totals by group, calls)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import String, func, insert, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ColumnElement, FunctionElement

from kyros.core.store.bridge import Conn
from kyros.core.store.schema import row_dict, usage, utcnow
from kyros.errors import InvalidInput

#: The groupings :func:`summarize` knows, each with the column it groups on.
GROUPINGS = ("run", "agent", "model", "project", "day", "provider", "outcome")

#: Outcome of a call still in flight: neither a success nor a failure yet.
PENDING = "pending"
OK = "ok"


class _UTCDay(FunctionElement[str]):
    """The UTC calendar date of a ``UTCDateTime`` column as ``YYYY-MM-DD`` text, on every
    backend: grouping by day must give the same keys on SQLite and PostgreSQL."""

    type = String()
    inherit_cache = True


@compiles(_UTCDay, "sqlite")
def _utc_day_sqlite(element: _UTCDay, compiler: SQLCompiler, **kw: Any) -> str:
    # SQLite holds UTCDateTime as naive UTC text ("YYYY-MM-DD HH:MM:SS.ffffff").
    return f"date({compiler.process(element.clauses, **kw)})"


@compiles(_UTCDay, "postgresql")
def _utc_day_postgresql(element: _UTCDay, compiler: SQLCompiler, **kw: Any) -> str:
    # timestamptz: converted explicitly, so the session's TimeZone setting cannot shift a day.
    column = compiler.process(element.clauses, **kw)
    return f"to_char(({column}) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"


def _key_column(by: str) -> ColumnElement[Any]:
    if by == "day":
        return _UTCDay(usage.c.created_at)
    if by == "run":
        return usage.c.run_id
    if by in GROUPINGS:
        return usage.c[by]
    raise InvalidInput(f"cannot group usage by {by!r}: choose one of {', '.join(GROUPINGS)}")


def _where(
    query: Any, *, since: datetime | None, until: datetime | None, run_id: str | None
) -> Any:
    if since is not None:
        query = query.where(usage.c.created_at >= since)
    if until is not None:
        query = query.where(usage.c.created_at < until)
    if run_id is not None:
        query = query.where(usage.c.run_id == run_id)
    return query


async def record(conn: Conn, **values: Any) -> None:
    """Write one ledger row; ``created_at`` defaults to now."""
    await conn.execute(insert(usage).values(**{"created_at": utcnow(), **values}))


async def for_run(conn: Conn, run_id: str) -> list[dict[str, Any]]:
    """Every ledger row of one run, oldest first."""
    rows = await conn.execute(select(usage).where(usage.c.run_id == run_id).order_by(usage.c.id))
    return [row_dict(r) for r in rows]


def _empty_group(key: str | None) -> dict[str, Any]:
    return {
        "key": key,
        "calls": 0,
        "ok": 0,
        "failed": 0,
        "outcomes": {},
        "tokens_in": 0,
        "tokens_out": 0,
        "cached_tokens": 0,
        "cost": 0.0,
        "unknown_cost_calls": 0,
        "cost_sources": {},
        "latency_ms_avg": None,
        # Running sums for the average; dropped before returning.
        "_latency_sum": 0.0,
        "_latency_n": 0,
    }


def _add(group: dict[str, Any], outcome: str, part: dict[str, Any]) -> None:
    calls = int(part["calls"])
    group["calls"] += calls
    source = part["cost_source"]
    if source is not None:
        group["cost_sources"][source] = group["cost_sources"].get(source, 0) + calls
    # SUM skips NULL: an unknown cost is counted apart, never as 0.
    group["unknown_cost_calls"] += int(part["unknown_cost_calls"] or 0)
    group["outcomes"][outcome] = group["outcomes"].get(outcome, 0) + calls
    if outcome == OK:
        group["ok"] += calls
        # Only successful calls have a latency worth averaging (a failure's is a timeout's).
        group["_latency_sum"] += float(part["latency_sum"] or 0.0)
        group["_latency_n"] += int(part["latency_n"] or 0)
    elif outcome != PENDING:
        group["failed"] += calls
    # PostgreSQL sums BIGINT as NUMERIC (Decimal): back to int.
    group["tokens_in"] += int(part["tokens_in"] or 0)
    group["tokens_out"] += int(part["tokens_out"] or 0)
    group["cached_tokens"] += int(part["cached_tokens"] or 0)
    group["cost"] += float(part["cost"] or 0.0)


def _finish(group: dict[str, Any]) -> dict[str, Any]:
    n = group.pop("_latency_n")
    total = group.pop("_latency_sum")
    group["latency_ms_avg"] = total / n if n else None
    group["outcomes"] = dict(sorted(group["outcomes"].items()))
    group["cost_sources"] = dict(sorted(group["cost_sources"].items()))
    return group


async def summarize(
    conn: Conn,
    *,
    by: str,
    since: datetime | None = None,
    until: datetime | None = None,
    run_id: str | None = None,
) -> dict[str, Any]:
    """Ledger totals grouped ``by`` one of :data:`GROUPINGS`, within ``[since, until)`` and
    optionally one run.

    Each group has its ``key`` (None where the column is empty, e.g. a call without an agent),
    ``calls``, ``ok``, ``failed`` (neither ok nor pending), ``outcomes`` (outcome → calls),
    token sums, ``cost`` (of the calls whose cost is known), ``unknown_cost_calls`` (whose
    cost is not), ``cost_sources`` (source → calls) and ``latency_ms_avg`` over successful
    calls. Groups come most
    expensive first (then by key); days come in calendar order. ``total`` sums every group.
    """
    key = _key_column(by).label("key")
    query = _where(
        select(
            key,
            usage.c.outcome,
            usage.c.cost_source,
            func.count().label("calls"),
            (func.count() - func.count(usage.c.cost)).label("unknown_cost_calls"),
            func.sum(usage.c.tokens_in).label("tokens_in"),
            func.sum(usage.c.tokens_out).label("tokens_out"),
            func.sum(usage.c.cached_tokens).label("cached_tokens"),
            func.sum(usage.c.cost).label("cost"),
            func.sum(usage.c.latency_ms).label("latency_sum"),
            func.count(usage.c.latency_ms).label("latency_n"),
        ),
        since=since,
        until=until,
        run_id=run_id,
    ).group_by(key, usage.c.outcome, usage.c.cost_source)
    groups: dict[str | None, dict[str, Any]] = {}
    total = _empty_group("total")
    for row in await conn.execute(query):
        part = row_dict(row)
        group = groups.get(part["key"])
        if group is None:
            group = groups[part["key"]] = _empty_group(part["key"])
        _add(group, part["outcome"], part)
        _add(total, part["outcome"], part)
    out = [_finish(g) for g in groups.values()]
    if by == "day":
        out.sort(key=lambda g: g["key"] or "")
    else:
        # Empty keys last among equal costs; rounding keeps float noise from reordering ties.
        out.sort(key=lambda g: (-round(g["cost"], 9), g["key"] is None, g["key"] or ""))
    return {"by": by, "groups": out, "total": _finish(total)}


async def recent(
    conn: Conn,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
    run_id: str | None = None,
) -> list[dict[str, Any]]:
    """Individual ledger rows within ``[since, until)``, newest first, at most ``limit``."""
    query = _where(
        select(usage).order_by(usage.c.created_at.desc(), usage.c.id.desc()).limit(limit),
        since=since,
        until=until,
        run_id=run_id,
    )
    return [row_dict(r) for r in await conn.execute(query)]


async def totals_for(conn: Conn, run_ids: list[str]) -> dict[str, Any]:
    """Calls, tokens and cost of the ledger rows of ``run_ids`` together (a run and its stages)."""
    query = select(
        func.count().label("calls"),
        func.sum(usage.c.tokens_in).label("tokens_in"),
        func.sum(usage.c.tokens_out).label("tokens_out"),
        func.sum(usage.c.cost).label("cost"),
    ).where(usage.c.run_id.in_(run_ids))
    row = row_dict((await conn.execute(query)).one())
    # PostgreSQL sums BIGINT as NUMERIC (Decimal): back to int.
    return {
        "calls": int(row["calls"] or 0),
        "tokens_in": int(row["tokens_in"] or 0),
        "tokens_out": int(row["tokens_out"] or 0),
        "cost": float(row["cost"] or 0.0),
    }


def roll_up_children(report: dict[str, Any], parents: dict[str, str]) -> dict[str, Any]:
    """A ``by="run"`` report where each parent run's group also counts its stages' calls.

    ``parents`` maps a stage's run id to its parent's. A parent's group lists its stages in
    ``children``; each call still counts once in ``total``. Groups are sorted again.
    """
    groups = {g["key"]: {**g, "outcomes": dict(g["outcomes"])} for g in report["groups"]}
    for group in report["groups"]:
        parent = parents.get(group["key"] or "")
        if parent is None:
            continue
        target = groups.get(parent)
        if target is None:
            target = groups[parent] = _finish(_empty_group(parent))
        target.setdefault("children", []).append(group["key"])
        # The mean latency of the sum: weighted by each side's successful calls.
        ok = target["ok"] + group["ok"]
        if ok:
            weighted = (target["latency_ms_avg"] or 0.0) * target["ok"] + (
                group["latency_ms_avg"] or 0.0
            ) * group["ok"]
            target["latency_ms_avg"] = weighted / ok
        for name in ("calls", "ok", "failed", "tokens_in", "tokens_out", "cached_tokens", "cost"):
            target[name] += group[name]
        for outcome, calls in group["outcomes"].items():
            target["outcomes"][outcome] = target["outcomes"].get(outcome, 0) + calls
    out = list(groups.values())
    out.sort(key=lambda g: (-round(g["cost"], 9), g["key"] is None, g["key"] or ""))
    return {**report, "groups": out}
