"""Spending you can trust, through a real daemon against the fake OpenAI-compatible server on
loopback (counting every request), on SQLite and PostgreSQL: a model without a known price is
never called under a cap, whichever cap; with a price set in settings the same run stops at the
right call; a cost the provider reports is used and recorded as such; without a cap the call
runs and the ledger shows its cost as unknown, never as $0."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FAST_QUEUE, Daemon, database, kyros_env, start_daemon
from tests.support.buggy_repo import call, make_repo
from tests.support.fake_openai import FakeOpenAI, Reply
from tests.test_plan_e2e import VALID_PLAN

pytestmark = pytest.mark.e2e

OPENAI_KEY = "sk-spending-sentinel-41c7e9"
#: litellm's price list does not know it, and the fake server is on loopback: only with
#: ``free_loopback`` off is its price unknown.
UNPRICED = "openai/fake-unpriced-model"
#: Each turn of the scripted agent: 1,000 output tokens.
TURN_TOKENS = 1000


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "calc-repo")


def _start(daemon_env: dict[str, str], **extra: Any) -> Daemon:
    env = {**daemon_env, "OPENAI_API_KEY": OPENAI_KEY, "KYROS_FREE_LOOPBACK": "false"}
    for key, value in extra.items():
        env[key] = json.dumps(value) if isinstance(value, dict) else str(value)
    return start_daemon(env)


def _plan_unpriced(
    d: Daemon, workspace: Path, srv: FakeOpenAI, *flags: str
) -> subprocess.CompletedProcess[str]:
    """`kyros run plan x` with the model no price list knows, at the fake server."""
    plan = ("run", "plan", "x", "-w", str(workspace))
    return d.cli(*plan, "--model", UNPRICED, "--api-base", srv.url, *flags)


def _turns(n: int) -> list[Reply]:
    return [
        Reply(
            tool_calls=[call(f"c{i}", "read_file", path="calc/__init__.py", end_line=i)],
            completion_tokens=TURN_TOKENS,
        )
        for i in range(1, n + 1)
    ]


#: Per kind of cap: the daemon's settings and the run's own flags. Every cap is $2.50, and a
#: configured price of $1,000 per 1M output tokens makes each 1,000-token turn worth $1.
CAPS: dict[str, tuple[dict[str, Any], list[str]]] = {
    "run": ({}, ["--budget", "2.50"]),
    "agent": ({"KYROS_BUDGET_AGENT": "2.50"}, ["--agent", "implementer"]),
    "project": ({"KYROS_BUDGET_PROJECT": "2.50"}, []),
    "day": ({"KYROS_BUDGET_DAY": "2.50"}, []),
}


#: Every cap on SQLite; on PostgreSQL (where capped calls reserve in the ledger) the run's
#: and the day's, the two extremes of what a reservation sums.
CAP_CASES = [
    *((cap, "sqlite") for cap in CAPS),
    *(pytest.param(cap, "postgresql", marks=pytest.mark.postgres) for cap in ("run", "day")),
]


@pytest.mark.parametrize(("cap", "backend"), CAP_CASES)
def test_under_each_cap_an_unpriced_model_is_never_called_and_a_priced_one_stops_in_time(
    cap: str, backend: str, xdg: dict[str, str], workspace: Path, fake_openai: FakeOpenAI
) -> None:
    with database(backend, xdg) as url:
        _unpriced_then_priced(
            cap, kyros_env(xdg, KYROS_DATABASE_URL=url, **FAST_QUEUE), workspace, fake_openai
        )


def _unpriced_then_priced(
    cap: str, daemon_env: dict[str, str], workspace: Path, fake_openai: FakeOpenAI
) -> None:
    settings, flags = CAPS[cap]
    models = {"coder": {"model": UNPRICED, "api_base": fake_openai.url, "max_output": 1000}}
    fake_openai.enqueue(*_turns(10))
    implement = ["run", "implement", "read it", "-w", str(workspace), "--json", *flags]

    d = _start(daemon_env, KYROS_MODELS=models, **settings)
    try:
        by_alias = d.cli(*implement, "--model", "coder")
        by_id = d.cli(*implement, "--model", UNPRICED, "--api-base", fake_openai.url)
        ends = [
            json.loads(
                d.cli(
                    "runs", "events", json.loads(out.stdout)["id"], "--jsonl"
                ).stdout.splitlines()[-1]
            )
            for out in (by_alias, by_id)
        ]
    finally:
        d.stop()
    assert len(fake_openai.requests) == 0  # not one byte left kyros
    for out, ended, line in (
        (by_alias, ends[0], "[models.coder] price_in = …, price_out = …"),
        (by_id, ends[1], f'prices."{UNPRICED}" = {{ price_in = …, price_out = … }}'),
    ):
        assert out.returncode == 1, out.stdout + out.stderr
        run = json.loads(out.stdout)
        assert run["status"] == "budget_exhausted", run
        assert "price is unknown" in run["error"] and line in run["error"], run["error"]
        assert UNPRICED in run["error"]
        assert ended["data"]["code"] == "price_unknown" and ended["data"]["scope"] == cap

    # The same run with the price set in settings (for the server's api_base): two $1 calls
    # fit under $2.50, the third could not.
    d = _start(
        daemon_env,
        KYROS_MODELS=models,
        KYROS_PRICES={fake_openai.url: {"price_in": 0.0, "price_out": 1000.0}},
        **settings,
    )
    try:
        out = d.cli(*implement, "--model", "coder")
        run = json.loads(out.stdout)
        calls = json.loads(d.cli("usage", "--calls", "--run", run["id"], "--json").stdout)
    finally:
        d.stop()
    assert out.returncode == 1 and run["status"] == "budget_exhausted", run
    assert "price is unknown" not in run["error"] and "$2.50" in run["error"]
    assert len(fake_openai.requests) == 2
    assert all(r.body["max_tokens"] == 1000 for r in fake_openai.requests)
    assert run["cost"] == pytest.approx(2.0)
    assert [(c["outcome"], c["cost_source"]) for c in calls] == [("ok", "configured")] * 2


def test_a_cost_the_provider_reports_is_used_and_recorded_as_reported(
    daemon_env: dict[str, str], workspace: Path, fake_openai: FakeOpenAI
) -> None:
    # The price list knows gpt-4.1-mini; the provider's own figure wins over it, under a cap too.
    fake_openai.enqueue(
        Reply(text=json.dumps(VALID_PLAN), cost=0.0421),
        Reply(text=json.dumps(VALID_PLAN), cost=0.0007),
        Reply(text=json.dumps(VALID_PLAN)),
    )
    plan = ["run", "plan", "add a flag", "-w", str(workspace), "--json"]
    d = _start(daemon_env, KYROS_BUDGET_DAY="5")
    try:
        listed = d.cli(*plan, "--model", "openai/gpt-4.1-mini", "--api-base", fake_openai.url)
        assert listed.returncode == 0, listed.stdout + listed.stderr
        # An unpriced model whose provider reports: refused under the cap (nothing bounds it
        # before the call), so this one runs uncapped on a second daemon below.
        refused = d.cli(*plan, "--model", UNPRICED, "--api-base", fake_openai.url)
        assert refused.returncode == 1
        plain = d.cli(*plan, "--model", "openai/gpt-4.1-mini", "--api-base", fake_openai.url)
        calls = json.loads(d.cli("usage", "--calls", "--json").stdout)
    finally:
        d.stop()
    assert len(fake_openai.requests) == 2
    by_run = {c["run_id"]: c for c in calls}
    reported = by_run[json.loads(listed.stdout)["id"]]
    assert (reported["cost"], reported["cost_source"]) == (pytest.approx(0.0421), "reported")
    assert json.loads(listed.stdout)["cost"] == pytest.approx(0.0421)
    second = by_run[json.loads(plain.stdout)["id"]]
    assert (second["cost"], second["cost_source"]) == (pytest.approx(0.0007), "reported")

    d = _start(daemon_env)
    try:
        out = d.cli(*plan, "--model", UNPRICED, "--api-base", fake_openai.url)
        row = json.loads(
            d.cli("usage", "--calls", "--run", json.loads(out.stdout)["id"], "--json").stdout
        )
    finally:
        d.stop()
    # No reported cost and no price: unknown, never $0.
    assert out.returncode == 0 and [(c["cost"], c["cost_source"]) for c in row] == [
        (None, "unknown")
    ]


def test_without_a_cap_an_unpriced_call_runs_and_usage_shows_its_cost_as_unknown(
    daemon_env: dict[str, str], workspace: Path, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(Reply(text=json.dumps(VALID_PLAN), completion_tokens=500))
    d = _start(daemon_env)
    try:
        out = _plan_unpriced(d, workspace, fake_openai, "--json")
        assert out.returncode == 0, out.stdout + out.stderr
        run = json.loads(out.stdout)
        report = json.loads(d.cli("usage", "--by", "model", "--json").stdout)
        calls = json.loads(d.cli("usage", "--calls", "--json").stdout)
        table = d.cli("usage", "--by", "model")
        listing = d.cli("usage", "--calls")
    finally:
        d.stop()
    assert len(fake_openai.requests) == 1 and run["status"] == "succeeded"
    assert [(c["outcome"], c["cost"], c["cost_source"]) for c in calls] == [("ok", None, "unknown")]
    group = report["groups"][0]
    assert group["calls"] == 1 and group["unknown_cost_calls"] == 1
    assert group["cost_sources"] == {"unknown": 1}
    assert report["total"]["unknown_cost_calls"] == 1 and report["total"]["cost"] == 0
    assert table.returncode == 0 and "unknown" in table.stdout and "$0.0000" not in table.stdout
    assert "1 call(s) of unknown cost" in table.stdout
    assert "unknown" in listing.stdout and "$0.0000" not in listing.stdout


def test_a_loopback_server_is_free_by_default_and_calls_under_a_cap(
    daemon_env: dict[str, str], workspace: Path, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(Reply(text=json.dumps(VALID_PLAN)))
    env = {**daemon_env, "OPENAI_API_KEY": OPENAI_KEY, "KYROS_BUDGET_DAY": "1"}
    d = start_daemon(env)
    try:
        out = _plan_unpriced(d, workspace, fake_openai, "--json")
        calls = json.loads(d.cli("usage", "--calls", "--json").stdout)
    finally:
        d.stop()
    assert out.returncode == 0, out.stdout + out.stderr
    assert len(fake_openai.requests) == 1
    assert [(c["cost"], c["cost_source"]) for c in calls] == [(0.0, "configured")]


@pytest.mark.parametrize("capped", [False, True], ids=["uncapped", "capped"])
@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_a_call_in_flight_when_the_daemon_is_killed_is_in_the_ledger_as_lost(
    backend: str, capped: bool, xdg: dict[str, str], workspace: Path, fake_openai: FakeOpenAI
) -> None:
    import signal
    import time

    # The server takes the request and holds its answer: the call is in flight when kill -9
    # lands. Capped and priced, PostgreSQL also holds a pending reservation for it.
    fake_openai.enqueue(Reply(text=json.dumps(VALID_PLAN), delay_first_chunk=120))
    fake_openai.default = Reply(text=json.dumps(VALID_PLAN))
    extra: dict[str, Any] = {}
    if capped:
        extra = {
            "KYROS_BUDGET_DAY": "5",
            "KYROS_PRICES": {UNPRICED: {"price_in": 1.0, "price_out": 2.0}},
        }
    with database(backend, xdg) as url:
        env = kyros_env(xdg, KYROS_DATABASE_URL=url, **FAST_QUEUE)
        first = _start(env, **extra)
        try:
            out = _plan_unpriced(first, workspace, fake_openai, "--detach")
            assert out.returncode == 0, out.stderr
            run_id = out.stdout.strip()
            deadline = time.monotonic() + 60
            while not fake_openai.requests and time.monotonic() < deadline:
                time.sleep(0.05)
            assert len(fake_openai.requests) == 1
        finally:
            first.stop(signal.SIGKILL)
        second = _start(env, **extra)
        try:
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                with second.client() as c:
                    run = c.run(run_id)
                if run["status"] not in ("queued", "running"):
                    break
                time.sleep(0.2)
            calls = json.loads(second.cli("usage", "--calls", "--run", run_id, "--json").stdout)
            report = json.loads(second.cli("usage", "--by", "outcome", "--json").stdout)
        finally:
            second.stop()
    assert run["status"] == "succeeded", run
    assert len(fake_openai.requests) == 2  # the lost call, then the resumed run's own
    lost, ok = sorted(calls, key=lambda c: c["id"])
    assert (lost["outcome"], lost["model"], lost["run_id"]) == ("lost", UNPRICED, run_id)
    assert "daemon stopped" in lost["error"]
    if capped and backend == "postgresql":
        # Its reservation, settled at the worst case it held: an estimate from the request.
        assert lost["cost"] > 0 and lost["cost_source"] is None
    else:
        assert (lost["cost"], lost["cost_source"]) == (None, "unknown")
    assert ok["outcome"] == "ok"
    groups = {g["key"]: g for g in report["groups"]}
    assert groups["lost"]["calls"] == 1
