"""AI routing through a real daemon, on SQLite and PostgreSQL, against fake providers over HTTP:
fallback across providers with the ledger telling the story, and hard budgets (RELIABILITY L5),
also when five runs race for one daily cap."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Daemon, start_daemon
from tests.support.buggy_repo import call, make_repo
from tests.support.fake_openai import FakeOpenAI, Reply
from tests.test_plan_e2e import VALID_PLAN

pytestmark = pytest.mark.e2e

OPENAI_KEY = "sk-routing-openai-sentinel-7f3a9c"
MISTRAL_KEY = "sk-routing-mistral-sentinel-2b8e41"
#: $0.001 per output token, 1,000 tokens at most: each call costs at most (and here exactly) $1.
PRICED = {"price_in": 0.0, "price_out": 1000.0, "max_output": 1000}


@pytest.fixture
def backup() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as srv:
        yield srv


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "calc-repo")


def _start(daemon_env: dict[str, str], **extra: Any) -> Daemon:
    env = {**daemon_env, "OPENAI_API_KEY": OPENAI_KEY, "MISTRAL_API_KEY": MISTRAL_KEY}
    for key, value in extra.items():
        env[key] = json.dumps(value) if isinstance(value, dict) else str(value)
    return start_daemon(env)


def _wait_all(d: Daemon, ids: list[str], timeout: float = 90) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with d.client() as c:
            runs = [c.run(i) for i in ids]
        if all(r["status"] not in ("queued", "running") for r in runs):
            return runs
        time.sleep(0.1)
    raise AssertionError(f"runs did not finish: {[r['status'] for r in runs]}")


def test_a_plan_falls_back_to_another_provider_and_the_ledger_shows_why(
    daemon_env: dict[str, str], workspace: Path, fake_openai: FakeOpenAI, backup: FakeOpenAI
) -> None:
    fake_openai.enqueue(Reply.error(429), Reply.error(500, "primary melted down"))
    backup.enqueue(Reply(text=json.dumps(VALID_PLAN), prompt_tokens=800, completion_tokens=100))
    d = _start(
        daemon_env,
        KYROS_MODELS={
            "primary": {"model": "openai/fake-primary", "api_base": fake_openai.url},
            "backup": {
                "model": "mistral/mistral-small-latest",
                "api_base": backup.url,
                "price_in": 2.0,
                "price_out": 6.0,
            },
        },
        KYROS_ROLES={"plan": {"model": "primary", "fallbacks": ["backup"]}},
    )
    try:
        out = d.cli("run", "plan", "add a flag", "-w", str(workspace), "--json")
        assert out.returncode == 0, out.stderr
        run = json.loads(out.stdout)
        assert run["status"] == "succeeded" and run["output"]["plan"]["steps"]
        events = [
            json.loads(line)
            for line in d.cli("runs", "events", run["id"], "--jsonl").stdout.splitlines()
        ]
        usage = json.loads(d.cli("usage", "--by", "model", "--json").stdout)
        calls = json.loads(d.cli("usage", "--calls", "--json").stdout)
        log = d.log.read_text()
    finally:
        d.stop()
    # Each provider got its own key, per call.
    assert {r.headers["authorization"] for r in fake_openai.requests} == {f"Bearer {OPENAI_KEY}"}
    assert backup.requests[0].headers["authorization"] == f"Bearer {MISTRAL_KEY}"
    routing = [
        (e["type"], e["data"])
        for e in events
        # model.call says which model a call starts on and why; the routing is what follows
        if e["type"].startswith("model.") and e["type"] not in ("model.delta", "model.call")
    ]
    kinds = [k for k, _ in routing]
    assert kinds[:2] == ["model.retry", "model.fallback"], kinds
    retry, fallback = routing[0][1], routing[1][1]
    assert retry["model"] == "primary" and retry["outcome"] == "rate_limit"
    assert (fallback["from"], fallback["to"], fallback["outcome"]) == (
        "primary",
        "backup",
        "provider",
    )
    assert "primary melted down" in fallback["message"]
    groups = {g["key"]: g for g in usage["groups"]}
    assert groups["primary"]["outcomes"] == {"rate_limit": 1, "provider": 1}
    assert groups["primary"]["cost"] == 0 and groups["backup"]["outcomes"] == {"ok": 1}
    # Priced from the catalogue (litellm's list does not know this deployment's prices).
    ok = next(c for c in calls if c["outcome"] == "ok")
    assert ok["cost"] == pytest.approx(ok["tokens_in"] * 2e-6 + ok["tokens_out"] * 6e-6)
    assert groups["backup"]["cost"] == pytest.approx(ok["cost"]) and ok["cost"] > 0
    assert run["cost"] == pytest.approx(groups["backup"]["cost"])  # the run's running cost
    assert [c["outcome"] for c in reversed(calls)][-3:] == ["rate_limit", "provider", "ok"]
    assert {c["provider"] for c in calls} >= {"openai", "mistral"}
    for text in (json.dumps(events), json.dumps(usage), json.dumps(calls), log):
        assert OPENAI_KEY not in text and MISTRAL_KEY not in text


def test_l5_a_run_stops_before_the_call_that_would_pass_its_cap(
    daemon_env: dict[str, str], workspace: Path, fake_openai: FakeOpenAI
) -> None:
    # Ten turns of $1 each: a $10 script against a $3.50 cap.
    fake_openai.enqueue(
        *(
            Reply(
                tool_calls=[call(f"c{i}", "read_file", path="calc/__init__.py", end_line=i)],
                completion_tokens=1000,
            )
            for i in range(1, 11)
        )
    )
    d = _start(
        daemon_env,
        KYROS_MODELS={
            "coder": {"model": "openai/fake-coder", "api_base": fake_openai.url, **PRICED}
        },
    )
    try:
        out = d.cli(
            "run",
            "implement",
            "read it",
            "-w",
            str(workspace),
            "--model",
            "coder",
            "--budget",
            "3.50",
            "--json",
        )
        run = json.loads(out.stdout)
        ledger = json.loads(d.cli("usage", "--calls", "--run", run["id"], "--json").stdout)
    finally:
        d.stop()
    assert out.returncode == 1 and run["status"] == "budget_exhausted", run
    assert len(fake_openai.requests) == 3  # the fourth call was never made
    assert all(r.body["max_tokens"] == 1000 for r in fake_openai.requests)  # bounded output
    assert run["cost"] == pytest.approx(3.0) and run["cost"] <= 3.50
    assert "$3.50" in run["error"] and "could cost up to $1.0000" in run["error"]
    assert [c["outcome"] for c in ledger] == ["ok"] * 3


def test_l5_five_runs_racing_for_one_daily_cap_never_pass_it(
    daemon_env: dict[str, str], workspace: Path, fake_openai: FakeOpenAI
) -> None:
    # Each plan costs $1 (slowly, so the five overlap); the day allows $3.
    fake_openai.default = Reply(
        text=json.dumps(VALID_PLAN), completion_tokens=1000, delay_first_chunk=0.5
    )
    d = _start(
        daemon_env,
        KYROS_MODELS={
            "planner": {"model": "openai/fake-planner", "api_base": fake_openai.url, **PRICED}
        },
        KYROS_BUDGET_DAY=3,
    )
    try:
        ids = []
        for n in range(5):
            out = d.cli(
                "run", "plan", f"plan {n}", "-w", str(workspace), "--model", "planner", "--detach"
            )
            assert out.returncode == 0, out.stderr
            ids.append(out.stdout.strip())
        runs = _wait_all(d, ids)
        usage = json.loads(d.cli("usage", "--by", "day", "--json").stdout)
    finally:
        d.stop()
    statuses = sorted(r["status"] for r in runs)
    assert statuses == ["budget_exhausted"] * 2 + ["succeeded"] * 3, statuses
    assert len(fake_openai.requests) == 3
    assert usage["total"]["cost"] == pytest.approx(3.0) and usage["total"]["cost"] <= 3.0
    for r in runs:
        if r["status"] == "budget_exhausted":
            assert "today's budget of $3.00" in r["error"]


def test_s11_a_stored_key_travels_per_call_and_is_kept_nowhere_else(
    xdg: dict[str, str], workspace: Path, fake_openai: FakeOpenAI
) -> None:
    import base64
    import signal
    from urllib.parse import quote

    from tests.conftest import FAST_QUEUE, kyros_env, run_cli
    from tests.test_plan_e2e import _http

    key = "sk-stored-sentinel-5e1d0c9b7a"
    db = f"{xdg['XDG_DATA_HOME']}/s11-stored.db"
    env = kyros_env(
        xdg,
        CI="1",  # no OS keyring on a CI box: the 0600 file
        KYROS_LOG_LEVEL="DEBUG",
        KYROS_DATABASE_URL=f"sqlite+aiosqlite:///{db}",
        KYROS_MODELS=json.dumps(
            {"coder": {"model": "openai/fake-coder", "api_base": fake_openai.url}}
        ),
        **FAST_QUEUE,
    )
    stored = run_cli(env, "auth", "set-key", "openai", input=key + "\n")
    assert stored.returncode == 0, stored.stderr
    fake_openai.enqueue(
        *[Reply.error(500, f"upstream exploded, key was {key}")] * 2,  # tried, retried: falls
        Reply(tool_calls=[call("c1", "run_command", command="cat /proc/self/environ")]),
        Reply(text="looked at the environment"),
    )
    d = start_daemon(env)
    try:
        failed = d.cli("run", "plan", "x", "-w", str(workspace), "--model", "coder", "--json")
        assert failed.returncode == 1 and "***" in json.loads(failed.stdout)["error"]
        out = d.cli("run", "implement", "look", "-w", str(workspace), "--model", "coder", "--json")
        assert out.returncode == 0, out.stdout + out.stderr
        events = "".join(
            d.cli("runs", "events", run_id, "--jsonl").stdout
            for run_id in (json.loads(failed.stdout)["id"], json.loads(out.stdout)["id"])
        )
        with _http(d) as http:
            config = http.get("/v1/config").text
        shown = d.cli("config", "show", "--json").stdout + d.cli("auth", "list", "--json").stdout
        usage = d.cli("usage", "--calls", "--json").stdout
        d.stop(signal.SIGKILL)  # a crash leaves whatever it leaves
    finally:
        d.stop()
    # The provider got the key, per call; the command the agent ran did not.
    assert {r.headers["authorization"] for r in fake_openai.requests} == {f"Bearer {key}"}
    assert "PATH=" in events and "upstream exploded" in events
    dump = b"".join(p.read_bytes() for p in Path(db).parent.glob("s11-stored.db*"))
    for form in (key, quote(key, safe=""), base64.b64encode(key.encode()).decode()):
        for where, text in {
            "log": d.log.read_text(),
            "events": events,
            "config": config + shown,
            "ledger": usage,
            "cli output": stored.stdout + stored.stderr + failed.stdout + out.stdout,
        }.items():
            assert form not in text, where
        assert form.encode() not in dump


def test_two_stalling_models_end_the_run_with_the_list_of_attempts(
    daemon_env: dict[str, str], workspace: Path, fake_openai: FakeOpenAI, backup: FakeOpenAI
) -> None:
    """a and b both accept and never answer; each rests for less time than a stall lasts. The
    run fails after each was tried twice (not after minutes of a, b, a, b …), saying what it
    tried."""
    fake_openai.default = backup.default = Reply.silent()
    d = _start(
        daemon_env,
        KYROS_MODELS={
            "a": {"model": "openai/fake-a", "api_base": fake_openai.url},
            "b": {"model": "openai/fake-b", "api_base": backup.url},
        },
        KYROS_ROLES={"plan": {"model": "a", "fallbacks": ["b"]}},
        KYROS_DEADLINE_FIRST_TOKEN="1",
        KYROS_COOLDOWN_SECONDS="0.5",
    )
    try:
        out = d.cli("run", "plan", "add a flag", "-w", str(workspace), "--json")
        run = json.loads(out.stdout)
        events = [
            json.loads(line)
            for line in d.cli("runs", "events", run["id"], "--jsonl").stdout.splitlines()
        ]
    finally:
        d.stop()
    assert out.returncode == 1 and run["status"] == "failed", run
    assert len(fake_openai.requests) == 2 and len(backup.requests) == 2
    # Four stalls of 1 s each, not minutes of them (from the first request to the last).
    arrivals = sorted(r.at for r in fake_openai.requests + backup.requests)
    assert arrivals[-1] - arrivals[0] < 3 * 1.0 + 3, arrivals
    assert "4 attempts" in run["error"]
    failed = events[-1]
    assert failed["type"] == "run.failed"
    tried = [(a["model"], a["server"], a["phase"]) for a in failed["data"]["attempts"]]
    assert (
        tried
        == [
            ("a", fake_openai.url, "first_token"),
            ("b", backup.url, "first_token"),
        ]
        * 2
    )
