"""The cost ledger's views: `usage.summarize` / `usage.recent` on SQLite and PostgreSQL,
`GET /v1/usage`, and `kyros usage` against a real daemon."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from kyros.core.ids import new_id
from kyros.core.store import runs as runs_repo
from kyros.core.store import usage as usage_repo
from kyros.core.store.engine import Store
from kyros.errors import InvalidInput
from tests.conftest import Daemon


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=UTC)


async def _seed(store: Store) -> dict[str, str]:
    """Eight calls over three UTC days, two runs, three models and every kind of outcome."""
    r1, r2 = new_id("r"), new_id("r")
    a = {"run_id": r1, "agent": "coder", "project": "/p/a"}
    b = {"run_id": r2, "agent": "critic", "project": "/p/b"}
    rows: list[dict[str, Any]] = [
        # 1, 2, 3: run 1 on gpt-a; the rate-limited call's latency must not count in the mean.
        {**a, "model": "gpt-a", "provider": "openai", "outcome": "ok", "created_at": at(1, 10),
         "tokens_in": 100, "tokens_out": 10, "cached_tokens": 5, "cost": 0.01, "latency_ms": 100},
        {**a, "model": "gpt-a", "provider": "openai", "outcome": "ok", "created_at": at(1, 23, 30),
         "tokens_in": 200, "tokens_out": 20, "cost": 0.02, "latency_ms": 300},
        {**a, "model": "gpt-a", "provider": "openai", "outcome": "rate_limit",
         "created_at": at(2, 0, 10), "latency_ms": 5000},
        # 4, 5, 6: run 2 on claude-b: a success, a timeout and a call still in flight.
        {**b, "model": "claude-b", "provider": "anthropic", "outcome": "ok",
         "created_at": at(2, 12), "tokens_in": 1000, "tokens_out": 100, "cached_tokens": 500,
         "cost": 0.5, "latency_ms": 1000},
        {**b, "model": "claude-b", "provider": "anthropic", "outcome": "timeout_first_token",
         "created_at": at(3, 8), "latency_ms": 30000},
        {**b, "model": "claude-b", "provider": "anthropic", "outcome": "pending",
         "created_at": at(3, 9)},
        # 7: no run, agent, project or provider.
        {"model": "gpt-a", "outcome": "ok", "created_at": at(3, 10), "tokens_in": 10,
         "tokens_out": 1, "cost": 0.001, "latency_ms": 200},
        # 8: written with a +02:00 offset: 01:00 there is 23:00 UTC on March 1st.
        {**a, "model": "local-c", "provider": "ollama", "outcome": "ok",
         "created_at": datetime(2026, 3, 2, 1, 0, tzinfo=timezone(timedelta(hours=2))),
         "tokens_in": 5, "tokens_out": 5, "cost": 0.0, "latency_ms": 50},
    ]  # fmt: skip
    async with store.write() as conn:
        for run_id in (r1, r2):
            await runs_repo.insert_run(conn, id=run_id, kind="plan", goal="g", workspace="/tmp")
        for row in rows:
            await usage_repo.record(conn, **row)
    return {"r1": r1, "r2": r2}


async def _summary(store: Store, by: str, **kw: Any) -> dict[str, Any]:
    async with store.read() as conn:
        return await usage_repo.summarize(conn, by=by, **kw)


def _keys(report: dict[str, Any]) -> list[Any]:
    return [g["key"] for g in report["groups"]]


def _by_key(report: dict[str, Any]) -> dict[Any, dict[str, Any]]:
    return {g["key"]: g for g in report["groups"]}


async def test_by_model_counts_outcomes_tokens_cost_and_ok_latency(store: Store) -> None:
    await _seed(store)
    report = await _summary(store, "model")
    assert report["by"] == "model"
    assert _keys(report) == ["claude-b", "gpt-a", "local-c"]  # most expensive first
    gpt = _by_key(report)["gpt-a"]
    assert gpt["calls"] == 4 and gpt["ok"] == 3 and gpt["failed"] == 1
    assert gpt["outcomes"] == {"ok": 3, "rate_limit": 1}
    assert (gpt["tokens_in"], gpt["tokens_out"], gpt["cached_tokens"]) == (310, 31, 5)
    assert gpt["cost"] == pytest.approx(0.031)
    assert gpt["latency_ms_avg"] == pytest.approx(200.0)  # (100 + 300 + 200) / 3
    claude = _by_key(report)["claude-b"]
    # The pending call counts as a call and an outcome, but not as a failure.
    assert claude["calls"] == 3 and claude["ok"] == 1 and claude["failed"] == 1
    assert claude["outcomes"] == {"ok": 1, "pending": 1, "timeout_first_token": 1}
    assert claude["latency_ms_avg"] == pytest.approx(1000.0)
    total = report["total"]
    assert total["key"] == "total"
    assert (total["calls"], total["ok"], total["failed"]) == (8, 5, 2)
    assert total["outcomes"] == {"ok": 5, "pending": 1, "rate_limit": 1, "timeout_first_token": 1}
    assert (total["tokens_in"], total["tokens_out"], total["cached_tokens"]) == (1315, 136, 505)
    assert total["cost"] == pytest.approx(0.531)
    assert total["latency_ms_avg"] == pytest.approx(330.0)  # five ok calls
    assert all(isinstance(total[k], int) for k in ("tokens_in", "tokens_out", "cached_tokens"))


async def test_every_grouping(store: Store) -> None:
    ids = await _seed(store)
    run = await _summary(store, "run")
    assert _keys(run) == [ids["r2"], ids["r1"], None]
    assert [g["calls"] for g in run["groups"]] == [3, 4, 1]
    assert _keys(await _summary(store, "agent")) == ["critic", "coder", None]
    assert _keys(await _summary(store, "project")) == ["/p/b", "/p/a", None]
    # Equal costs are ordered by key; the group without a key comes after keyed ones.
    provider = await _summary(store, "provider")
    assert _keys(provider) == ["anthropic", "openai", None, "ollama"]
    outcome = await _summary(store, "outcome")
    assert _keys(outcome) == ["ok", "pending", "rate_limit", "timeout_first_token"]
    groups = _by_key(outcome)
    assert (groups["ok"]["ok"], groups["ok"]["failed"], groups["ok"]["calls"]) == (5, 0, 5)
    assert (groups["pending"]["ok"], groups["pending"]["failed"]) == (0, 0)
    assert groups["rate_limit"]["failed"] == 1 and groups["rate_limit"]["latency_ms_avg"] is None
    for report in (run, provider, outcome):
        assert report["total"]["calls"] == 8
        assert report["total"]["cost"] == pytest.approx(0.531)


async def test_by_day_is_the_utc_calendar_day_in_calendar_order(store: Store) -> None:
    await _seed(store)
    report = await _summary(store, "day")
    # Chronological although March 2nd cost the most; the +02:00 row lands on March 1st.
    assert _keys(report) == ["2026-03-01", "2026-03-02", "2026-03-03"]
    assert [g["calls"] for g in report["groups"]] == [3, 2, 3]
    assert [g["cost"] for g in report["groups"]] == pytest.approx([0.03, 0.5, 0.001])


async def test_by_day_ignores_the_session_time_zone(store: Store) -> None:
    """On PostgreSQL the day must not follow the connection's TimeZone setting."""
    if not store.is_postgres:
        pytest.skip("SQLite has no session time zone")
    await _seed(store)
    async with store.read() as conn:
        await conn.execute(text("SET TIME ZONE 'Pacific/Kiritimati'"))  # UTC+14
        report = await usage_repo.summarize(conn, by="day")
    assert _keys(report) == ["2026-03-01", "2026-03-02", "2026-03-03"]
    assert [g["calls"] for g in report["groups"]] == [3, 2, 3]


async def test_since_until_and_run_filters(store: Store) -> None:
    ids = await _seed(store)
    day2 = await _summary(store, "model", since=at(2, 0), until=at(3, 0))
    assert _by_key(day2)["gpt-a"]["calls"] == 1 and _by_key(day2)["claude-b"]["calls"] == 1
    assert day2["total"]["calls"] == 2
    # since is inclusive, until exclusive.
    edge = await _summary(store, "model", since=at(1, 23, 30), until=at(3, 8))
    assert edge["total"]["calls"] == 3  # rows 2, 3 and 4
    # Offsets are compared as instants: 23:00+02:00 is 21:00 UTC.
    offset = await _summary(
        store, "model", since=datetime(2026, 3, 1, 23, 0, tzinfo=timezone(timedelta(hours=2)))
    )
    assert offset["total"]["calls"] == 7  # all but the 10:00 UTC call of March 1st
    one_run = await _summary(store, "model", run_id=ids["r1"])
    assert _keys(one_run) == ["gpt-a", "local-c"] and one_run["total"]["calls"] == 4
    nothing = await _summary(store, "day", since=at(20, 0))
    assert nothing["groups"] == []
    assert nothing["total"]["calls"] == 0 and nothing["total"]["latency_ms_avg"] is None


async def test_unknown_grouping_is_invalid_input(store: Store) -> None:
    with pytest.raises(InvalidInput, match="choose one of"):
        await _summary(store, "colour")


async def test_recent_lists_calls_newest_first(store: Store) -> None:
    ids = await _seed(store)
    async with store.read() as conn:
        calls = await usage_repo.recent(conn)
        assert [c["created_at"] for c in calls] == sorted(
            (c["created_at"] for c in calls), reverse=True
        )
        assert len(calls) == 8 and calls[0]["created_at"] == at(3, 10)
        assert calls[0]["created_at"].tzinfo is not None
        top = await usage_repo.recent(conn, limit=3)
        assert [c["outcome"] for c in top] == ["ok", "pending", "timeout_first_token"]
        since = await usage_repo.recent(conn, since=at(3, 0))
        assert len(since) == 3
        mine = await usage_repo.recent(conn, run_id=ids["r1"], until=at(2, 0))
        assert [c["model"] for c in mine] == ["gpt-a", "local-c", "gpt-a"]


# --- the CLI's time parsing ----------------------------------------------------------------------


def test_relative_and_absolute_times() -> None:
    import typer

    from kyros.cli.usage_cmd import resolve_when

    now = datetime(2026, 11, 5, 12, 0, tzinfo=UTC)
    assert resolve_when("24h", "--since", now) == "2026-11-04T12:00:00+00:00"
    assert resolve_when("7d", "--since", now) == "2026-10-29T12:00:00+00:00"
    assert resolve_when("30m", "--since", now) == "2026-11-05T11:30:00+00:00"
    assert resolve_when("2w", "--since", now) == "2026-10-22T12:00:00+00:00"
    assert resolve_when("2026-11-01", "--since", now) == "2026-11-01"
    assert resolve_when("2026-11-01T09:30:00Z", "--since", now) == "2026-11-01T09:30:00+00:00"
    assert resolve_when("2026-11-01T09:30:00", "--since", now) == "2026-11-01T09:30:00+00:00"
    assert resolve_when("2026-11-01T11:30+02:00", "--since", now) == "2026-11-01T09:30:00+00:00"
    assert resolve_when(None, "--since", now) is None
    for bad in ("yesterday", "24", "-3d", "7 days", "999999999w", ""):
        with pytest.raises(typer.BadParameter, match="30m, 24h, 7d"):
            resolve_when(bad, "--since", now)


# --- end to end: a real daemon -------------------------------------------------------------------


def _seed_daemon_db(url: str, now: datetime) -> str:
    """Calls written straight into the daemon's database, as its executors would."""
    run_id = new_id("r")

    async def go() -> None:
        store = Store(url)
        try:
            async with store.write() as conn:
                await runs_repo.insert_run(
                    conn, id=run_id, kind="plan", goal="g", workspace="/w", status="succeeded"
                )
                common = {"run_id": run_id, "agent": "planner", "project": "/w"}
                for model, outcome, cost, when in (
                    ("e2e-big", "ok", 0.25, now - timedelta(minutes=30)),
                    ("e2e-big", "rate_limit", 0.0, now - timedelta(minutes=20)),
                    ("e2e-small", "ok", 0.0125, now - timedelta(minutes=10)),
                    ("e2e-small", "ok", 0.0125, now - timedelta(days=3)),
                ):
                    await usage_repo.record(
                        conn,
                        **common,
                        model=model,
                        outcome=outcome,
                        cost=cost,
                        tokens_in=100,
                        tokens_out=10,
                        latency_ms=400.0 if outcome == "ok" else None,
                        created_at=when,
                    )
        finally:
            await store.close()

    asyncio.run(go())
    return run_id


@pytest.mark.e2e
def test_kyros_usage_over_a_real_daemon(shared_daemon: Daemon) -> None:
    run_id = _seed_daemon_db(shared_daemon.env["KYROS_DATABASE_URL"], datetime.now(UTC))

    out = shared_daemon.cli("usage", "--by", "model", "--run", run_id, "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)  # exactly one JSON document
    assert report["by"] == "model" and report["run"] == run_id
    assert [g["key"] for g in report["groups"]] == ["e2e-big", "e2e-small"]
    big, small = report["groups"]
    assert (big["calls"], big["ok"], big["failed"]) == (2, 1, 1)
    assert big["outcomes"] == {"ok": 1, "rate_limit": 1}
    assert big["latency_ms_avg"] == pytest.approx(400.0)
    assert small["calls"] == 2 and small["cost"] == pytest.approx(0.025)
    assert report["total"]["calls"] == 4 and report["total"]["cost"] == pytest.approx(0.275)

    # A relative --since becomes an absolute time: the call three days ago drops out.
    out = shared_daemon.cli("usage", "--since", "2h", "--run", run_id, "--json")
    assert out.returncode == 0, out.stderr
    recent = json.loads(out.stdout)
    assert recent["total"]["calls"] == 3
    assert datetime.fromisoformat(recent["since"]) < datetime.now(UTC)

    out = shared_daemon.cli("usage", "--calls", "--run", run_id, "--json")
    assert out.returncode == 0, out.stderr
    calls = json.loads(out.stdout)
    assert [c["model"] for c in calls] == ["e2e-small", "e2e-big", "e2e-big", "e2e-small"]
    assert calls[0]["run_id"] == run_id and calls[1]["outcome"] == "rate_limit"

    # Human output: a table with a total line and dollar amounts.
    out = shared_daemon.cli("usage", "--by", "day", "--run", run_id)
    assert out.returncode == 0, out.stderr
    assert "total" in out.stdout and "$0.2750" in out.stdout
    out = shared_daemon.cli("usage", "--calls", "--run", run_id, "--limit", "2")
    assert out.returncode == 0, out.stderr
    assert "e2e-small" in out.stdout and "rate_limit" in out.stdout and "$0.0125" in out.stdout

    with shared_daemon.client() as c:
        assert c.usage("agent", run=run_id)["groups"][0]["key"] == "planner"
        assert len(c.usage_calls(run=run_id, limit=3)) == 3


@pytest.mark.e2e
def test_a_demo_plan_records_its_call(shared_daemon: Daemon, tmp_path: Path) -> None:
    out = shared_daemon.cli(
        "run", "plan", "add a flag", "-w", str(tmp_path), "-m", "demo", "--json"
    )
    assert out.returncode == 0, out.stderr
    run_id = json.loads(out.stdout)["id"]
    out = shared_daemon.cli("usage", "--by", "run", "--run", run_id, "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert [g["key"] for g in report["groups"]] == [run_id]
    assert report["total"]["ok"] >= 1 and report["total"]["failed"] == 0


@pytest.mark.e2e
def test_bad_arguments_exit_2_with_a_message(shared_daemon: Daemon) -> None:
    out = shared_daemon.cli("usage", "--by", "nope")
    assert out.returncode == 2
    assert "--by" in out.stderr and "model" in out.stderr and not out.stdout
    out = shared_daemon.cli("usage", "--since", "last tuesday", "--json")
    assert out.returncode == 2
    assert "--since" in out.stderr and "24h" in out.stderr and "2026-11-01" in out.stderr
    error = json.loads(out.stdout)["error"]  # --json: the error as a document on stdout too
    assert "--since" in error["message"] and error["hint"] == "kyros usage --help"
    out = shared_daemon.cli("usage", "--until", "soon")
    assert out.returncode == 2 and "--until" in out.stderr
    out = shared_daemon.cli("usage", "--calls", "--by", "day")
    assert out.returncode == 2 and "--calls" in out.stderr


@pytest.mark.e2e
def test_api_rejects_bad_grouping_and_times_with_422(shared_daemon: Daemon) -> None:
    with shared_daemon.client() as c:
        for path, where in (
            ("/v1/usage?by=nope", "by"),
            ("/v1/usage?since=yesterday", "since"),
            ("/v1/usage/calls?until=2026-13-45", "until"),
            ("/v1/usage/calls?limit=0", "limit"),
        ):
            response = c._http.get(path)
            assert response.status_code == 422, path
            error = response.json()["error"]
            assert error["code"] == "invalid_input" and where in error["message"], error
        ok = c._http.get("/v1/usage", params={"by": "day", "since": "2026-01-01"})
        assert ok.status_code == 200
        body = ok.json()
        assert body["since"].startswith("2026-01-01T00:00:00") and body["by"] == "day"
        # A bare date as `until` includes that day.
        until = c._http.get("/v1/usage", params={"until": "2026-01-01"}).json()["until"]
        assert until.startswith("2026-01-02T00:00:00")
