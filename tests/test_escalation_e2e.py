"""Agents keep their word, end to end against two fake OpenAI-compatible servers that count
every request: escalation calls the stronger model at its own server, each pipeline stage
reaches its role's model, the pipeline's gate and totals, agent status and default tools, and
runs whose every change was denied."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BACKENDS, FAST_QUEUE, Daemon, database, kyros_env, start_daemon, xdg_dirs
from tests.support.buggy_repo import FIX, call, make_repo
from tests.support.fake_openai import FakeOpenAI, Reply

pytestmark = pytest.mark.e2e

PLAN = {
    "summary": "Fix add().",
    "steps": [{"title": "Fix the operator", "detail": "a - b → a + b", "files": ["calc/x.py"]}],
    "risks": [],
}
FINDING = {"severity": "major", "file": "calc/__init__.py", "line": 2, "message": "docstring"}
#: USD per 1M tokens: every call has a price, so totals are more than zeros.
PRICES = {"price_in": 1.0, "price_out": 2.0, "key": "none"}


def verdict(v: str, score: int) -> Reply:
    body = {"score": score, "verdict": v, "summary": f"{v} it is", "findings": [FINDING]}
    return Reply(text=json.dumps(body))


class World:
    """A daemon whose catalogue spreads the roles over two servers: A (cheap) and B (strong)."""

    def __init__(self, daemon: Daemon, a: FakeOpenAI, b: FakeOpenAI) -> None:
        self.daemon, self.a, self.b = daemon, a, b

    def cli(self, *args: str) -> Any:
        return self.daemon.cli(*args)

    def json(self, *args: str) -> Any:
        out = self.cli(*args, "--json")
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    def fresh(self) -> None:
        for srv in (self.a, self.b):
            srv.clear_queue()
            srv.requests.clear()

    @staticmethod
    def models(srv: FakeOpenAI) -> list[str]:
        return [r.body["model"] for r in srv.requests if r.path.endswith("/chat/completions")]


@pytest.fixture(scope="module", params=BACKENDS)
def world(request: pytest.FixtureRequest) -> Iterator[World]:
    with (
        FakeOpenAI() as a,
        FakeOpenAI() as b,
        xdg_dirs() as env,
        database(request.param, env) as url,
    ):
        models = {
            "planm": {"model": "openai/plan-m", "api_base": a.url, **PRICES},
            "coder": {"model": "openai/coder1", "api_base": a.url, **PRICES},
            "mine": {"model": "openai/agent-model", "api_base": a.url, **PRICES},
            "strong": {"model": "openai/strong2", "api_base": b.url, **PRICES},
            "judge": {"model": "openai/judge", "api_base": b.url, **PRICES},
            "lost": {"model": "anthropic/claude-x"},
        }
        roles = {
            "plan": {"model": "planm"},
            "implement": {"model": "coder"},
            "critic": {"model": "judge"},
        }
        d = start_daemon(
            kyros_env(
                env,
                KYROS_DATABASE_URL=url,
                KYROS_MODELS=json.dumps(models),
                KYROS_ROLES=json.dumps(roles),
                **FAST_QUEUE,
            )
        )
        try:
            yield World(d, a, b)
        finally:
            d.stop()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "calc-repo")


@pytest.mark.parametrize("agent_model", [None, "mine"])
def test_an_escalating_pipeline_calls_the_stronger_model_at_its_own_server(
    world: World, repo: Path, agent_model: str | None
) -> None:
    world.fresh()
    name = f"esc-{agent_model or 'none'}"
    args = ["--model", agent_model] if agent_model else []
    added = world.cli(
        "agents", "add", name, "--role", "implement", "--policy", "auto", *args,
        "--max-revisions", "0", "--stronger-model", "strong", "--no-human",
    )  # fmt: skip
    assert added.returncode == 0 or "exists" in added.stderr, added.stderr
    world.a.enqueue(
        Reply(text=json.dumps(PLAN)),
        Reply(tool_calls=[call("c1", "apply_patch", patch=FIX)]),
        Reply(text="fixed"),
    )
    world.b.enqueue(
        verdict("revise", 40), Reply(text="the stronger model looked again"), verdict("fail", 20)
    )
    out = world.cli("run", "pipeline", "fix add", "-w", str(repo), "--agent", name, "--json")
    assert out.returncode == 1, out.stderr
    run = json.loads(out.stdout)
    assert "quality gate failed" in run["error"]
    implementer = "agent-model" if agent_model else "coder1"
    # Server A: the plan role's model, then the implement stage's (the agent's, or the role's).
    assert world.models(world.a) == ["plan-m", implementer, implementer]
    # Server B: the critic role's model, the stronger model once — exactly when the policy
    # says (after the first review, with no revisions allowed) — and the critic again.
    assert world.models(world.b) == ["judge", "strong2", "judge"]
    shown = world.json("runs", "show", run["id"])
    assert [s["action"] for s in shown["escalations"]] == ["stronger_model", "rejected"]
    stronger = shown["children"][3]
    assert stronger["model"] == "strong" and stronger["api_base"] == world.b.url
    calls = [
        e["data"]
        for e in world.json("runs", "events", stronger["id"], "--no-follow")
        if e["type"] == "model.call"
    ]
    assert calls and {(c["model"], c["server"], c["reason"]) for c in calls} == {
        ("strong", world.b.url, "escalation")
    }
    reasons = [k["params"]["model_choice"]["reason"] for k in shown["children"]]
    assert reasons == [
        "role:plan",
        "agent" if agent_model else "role:implement",
        "role:critic",
        "escalation",
        "role:critic",
    ]


def test_pipeline_fail_under_and_totals_of_its_stages(world: World, repo: Path) -> None:
    world.fresh()
    world.a.enqueue(
        Reply(text=json.dumps(PLAN)),
        Reply(tool_calls=[call("c1", "apply_patch", patch=FIX)]),
        Reply(text="fixed"),
    )
    world.b.enqueue(verdict("pass", 75))
    below = world.cli("run", "pipeline", "fix add", "-w", str(repo), "--fail-under", "80", "--json")
    assert below.returncode == 1, below.stderr  # passed the critic, but 75 < 80
    run = json.loads(below.stdout)
    assert run["status"] == "succeeded" and run["output"]["assessment"]["score"] == 75
    world.a.enqueue(
        Reply(text=json.dumps(PLAN)),
        Reply(tool_calls=[call("c1", "apply_patch", patch=FIX)]),
        Reply(text="fixed"),
    )
    world.b.enqueue(verdict("pass", 90))
    above = world.cli("run", "pipeline", "fix add", "-w", str(repo), "--fail-under", "80", "--json")
    assert above.returncode == 0, above.stderr

    shown = world.json("runs", "show", run["id"])
    kids = shown["children"]
    assert [k["kind"] for k in kids] == ["plan", "implement", "critic"]
    assert shown["cost"] > 0
    assert shown["cost"] == pytest.approx(sum(k["cost"] for k in kids))
    assert shown["tokens_in"] == sum(k["tokens_in"] for k in kids) > 0
    assert shown["tokens_out"] == sum(k["tokens_out"] for k in kids) > 0
    assert shown["usage"]["calls"] == 4  # plan, two implement turns, the review
    assert shown["usage"]["cost"] == pytest.approx(shown["cost"])

    report = world.json("usage", "--by", "run")
    groups = {g["key"]: g for g in report["groups"]}
    parent = groups[run["id"]]
    assert sorted(parent["children"]) == sorted(k["id"] for k in kids)
    assert parent["calls"] == sum(groups[k["id"]]["calls"] for k in kids) == 4
    assert parent["cost"] == pytest.approx(sum(groups[k["id"]]["cost"] for k in kids))
    assert parent["tokens_in"] == shown["tokens_in"]
    # Each call still counts once in the total.
    assert report["total"]["calls"] == sum(
        g["calls"] for g in report["groups"] if not g["children"]
    )
    text = world.cli("runs", "show", run["id"])
    assert "4 model calls" in text.stdout and "chosen: role:" in text.stdout


def test_builtin_agents_with_role_models_are_idle_and_offline_says_why(world: World) -> None:
    listed = {a["name"]: a for a in world.json("agents", "list")}
    for name, model in (("planner", "planm"), ("implementer", "coder"), ("critic", "judge")):
        assert (listed[name]["status"], listed[name]["model"]) == ("idle", model)
    added = world.cli("agents", "add", "stranded", "--model", "lost")
    assert added.returncode == 0 or "exists" in added.stderr
    status = {a["name"]: a for a in world.json("agents", "list")}["stranded"]
    assert status["status"] == "offline" and "anthropic" in status["problem"]
    text = world.cli("agents", "list")
    assert "stranded is offline:" in text.stdout


def test_an_implement_agent_without_tools_can_write_and_denied_writes_fail(
    world: World, repo: Path
) -> None:
    world.fresh()
    assert world.cli("agents", "add", "writer", "--role", "implement", "--policy", "auto")
    writer = world.json("agents", "show", "writer")
    assert writer["tools"] == ["command", "read", "write"]
    world.a.enqueue(
        Reply(tool_calls=[call("w1", "write_file", path="NOTES.md", content="hello\n")]),
        Reply(text="wrote the notes"),
    )
    out = world.cli("run", "implement", "add notes", "-w", str(repo), "--agent", "writer", "--json")
    assert out.returncode == 0, out.stderr
    assert "+hello" in json.loads(out.stdout)["output"]["diff"]

    world.cli("agents", "add", "reader", "--role", "implement", "--tools", "read")
    world.a.enqueue(
        Reply(tool_calls=[call("w1", "write_file", path="NOTES.md", content="hello\n")]),
        Reply(tool_calls=[call("w2", "apply_patch", patch=FIX)]),
        Reply(text="done, I think"),
    )
    denied = world.cli(
        "run", "implement", "add notes", "-w", str(repo), "--agent", "reader", "--json"
    )
    assert denied.returncode == 1, denied.stderr
    run = json.loads(denied.stdout)
    assert run["status"] == "failed"
    assert "every change was denied: 2 write call(s)" in run["error"]
    assert "--tools read,write,command" in run["error"]
    assert world.models(world.a) == ["coder1"] * 5


def test_the_critic_vendor_swap_is_a_setting_and_is_said(
    daemon_env: dict[str, str], tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    models = {
        "coder": {"model": "openai/coder1", "api_base": fake_openai.url, "key": "none"},
        "judge": {"model": "openai/judge", "api_base": fake_openai.url, "key": "none"},
        "claude": {"model": "anthropic/claude-x", "api_base": fake_openai.url, "key": "none"},
    }
    env = {
        **daemon_env,
        "KYROS_MODELS": json.dumps(models),
        "KYROS_ROLES": json.dumps({"implement": {"model": "coder"}, "critic": {"model": "judge"}}),
    }
    patch = tmp_path / "change.diff"
    patch.write_text(FIX)
    repo = make_repo(tmp_path / "calc-repo")
    fake_openai.enqueue(
        Reply(tool_calls=[call("c1", "apply_patch", patch=FIX)]), Reply(text="fixed")
    )
    d = start_daemon(env)
    try:
        done = d.cli("run", "implement", "fix add", "-w", str(repo), "--json")
        assert done.returncode == 0, done.stderr
        target = json.loads(done.stdout)["id"]
        # On (the default): the configured critic is of the change's vendor, so claude reviews.
        queued = d.cli("run", "critic", "--run", target, "-w", str(repo), "--detach", "--json")
        assert queued.returncode == 0, queued.stderr
        run = json.loads(queued.stdout)
        choice = run["params"]["model_choice"]
        assert (run["model"], choice["reason"], choice["replaced"]) == (
            "claude",
            "critic:other-vendor",
            "judge",
        )
        events = json.loads(d.cli("runs", "events", run["id"], "--no-follow", "--json").stdout)
        replaced = [e["data"] for e in events if e["type"] == "model.replaced"]
        assert replaced and replaced[0]["replaced"] == "judge"
        shown = d.cli("runs", "show", run["id"])
        assert "replaced judge" in shown.stdout and "critic_other_vendor" in shown.stdout
        # Its call goes to claude (which the fake server does not speak): let it end first.
        deadline = time.monotonic() + 60
        while json.loads(d.cli("runs", "show", run["id"], "--json").stdout)["status"] not in (
            "succeeded",
            "failed",
        ):
            assert time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        d.stop()
    # Off: the configured [roles.critic] model reviews, as configured.
    d = start_daemon({**env, "KYROS_CRITIC_OTHER_VENDOR": "false"})
    try:
        fake_openai.enqueue(verdict("pass", 90))
        out = d.cli("run", "critic", "--run", target, "-w", str(repo), "--json")
        assert out.returncode == 0, out.stderr
        run = json.loads(out.stdout)
        assert (run["model"], run["params"]["model_choice"]["reason"]) == ("judge", "role:critic")
        assert fake_openai.requests[-1].body["model"] == "judge"
    finally:
        d.stop()
