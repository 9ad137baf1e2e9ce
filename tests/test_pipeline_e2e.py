"""Critic and pipeline runs end to end: plan → implement → critic gate → escalation, with the
quality assessment and every escalation step stored and shown by `kyros runs show --json`."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Daemon, run_cli
from tests.support.buggy_repo import FIX, call, make_repo, run_tests
from tests.support.fake_openai import FakeOpenAI, Reply

pytestmark = pytest.mark.e2e

PLAN = {
    "summary": "Fix add().",
    "steps": [
        {"title": "Fix the operator", "detail": "a - b → a + b", "files": ["calc/__init__.py"]}
    ],
    "risks": [],
}


def verdict(v: str, score: int, *findings: dict[str, Any]) -> Reply:
    body = {"score": score, "verdict": v, "summary": f"{v} it is", "findings": list(findings)}
    return Reply(text=json.dumps(body))


FINDING = {"severity": "major", "file": "calc/__init__.py", "line": 2, "message": "docstring"}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "calc-repo")


def _model(srv: FakeOpenAI) -> list[str]:
    return ["--model", "openai/fake-coder", "--api-base", srv.url]


def test_critic_reviews_a_diff_file_and_fail_under_sets_the_exit_code(
    shared_daemon: Daemon, repo: Path, tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    patch = tmp_path / "change.diff"
    patch.write_text(FIX)
    fake_openai.enqueue(Reply(text="not json at all"), verdict("revise", 55, FINDING))
    out = shared_daemon.cli(
        "run",
        "critic",
        "--diff",
        str(patch),
        "-w",
        str(repo),
        *_model(fake_openai),
        "--fail-under",
        "70",
        "--json",
    )
    assert out.returncode == 1, out.stderr  # 55 < 70
    run = json.loads(out.stdout)
    assessment = run["output"]["assessment"]
    assert (assessment["score"], assessment["verdict"]) == (55, "revise")
    assert assessment["findings"][0]["file"] == "calc/__init__.py"
    # The invalid first answer was sent back with the problem.
    assert "not a valid assessment" in fake_openai.requests[1].body["messages"][-1]["content"]
    assert "return a + b" in fake_openai.requests[0].body["messages"][1]["content"]
    shown = json.loads(shared_daemon.cli("runs", "show", run["id"], "--json").stdout)
    assert shown["assessments"][0]["score"] == 55


def test_critic_reviews_a_git_range(
    shared_daemon: Daemon, repo: Path, fake_openai: FakeOpenAI
) -> None:
    from tests.support.buggy_repo import git

    (repo / "calc" / "__init__.py").write_text(
        (repo / "calc" / "__init__.py").read_text() + "# x\n"
    )
    git(repo, "commit", "-qam", "a comment")
    fake_openai.enqueue(verdict("pass", 92))
    out = shared_daemon.cli(
        "run", "critic", "--range", "HEAD~1..HEAD", "-w", str(repo), *_model(fake_openai), "--json"
    )
    assert out.returncode == 0, out.stderr
    assert "+# x" in fake_openai.requests[-1].body["messages"][1]["content"]
    bad = shared_daemon.cli(
        "run", "critic", "--range", "nope..HEAD", "-w", str(repo), *_model(fake_openai)
    )
    assert bad.returncode == 1 and "nope" in bad.stderr


def test_pipeline_passes_the_gate_and_exits_with_its_verdict(
    shared_daemon: Daemon, repo: Path, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(
        Reply(text=json.dumps(PLAN)),
        Reply(tool_calls=[call("c1", "apply_patch", patch=FIX)]),
        Reply(text="fixed"),
        verdict("pass", 88),
    )
    out = shared_daemon.cli(
        "run", "pipeline", "make the tests pass", "-w", str(repo), *_model(fake_openai), "--json"
    )
    assert out.returncode == 0, out.stderr
    run = json.loads(out.stdout)
    assert run["status"] == "succeeded" and run["output"]["assessment"]["verdict"] == "pass"
    shown = json.loads(shared_daemon.cli("runs", "show", run["id"], "--json").stdout)
    assert [k["kind"] for k in shown["children"]] == ["plan", "implement", "critic"]
    assert shown["assessments"][0]["score"] == 88 and shown["escalations"] == []
    # The implement stage followed the plan stage's plan, in the same conversation.
    implement_prompt = fake_openai.requests[1].body["messages"]
    assert any("Fix the operator" in str(m.get("content")) for m in implement_prompt)
    assert shared_daemon.cli("run", "apply", run["id"]).returncode == 0
    assert run_tests(repo).returncode == 0


def test_every_stage_uses_the_model_the_client_sent(
    shared_daemon: Daemon, repo: Path, fake_openai: FakeOpenAI
) -> None:
    """KYROS_MODEL and KYROS_API_BASE in the user's shell, not the daemon's: the pipeline and
    each of its stages choose with them (ADR 0017), so every request reaches that model."""
    fake_openai.enqueue(
        Reply(text=json.dumps(PLAN)),
        Reply(tool_calls=[call("c1", "apply_patch", patch=FIX)]),
        Reply(text="fixed"),
        verdict("pass", 88),
    )
    env = {**shared_daemon.env, "KYROS_MODEL": "openai/from-env", "KYROS_API_BASE": fake_openai.url}
    out = run_cli(env, "run", "pipeline", "make the tests pass", "-w", str(repo), "--json")
    assert out.returncode == 0, out.stderr
    run = json.loads(out.stdout)
    assert run["status"] == "succeeded", run
    assert [r.body["model"] for r in fake_openai.requests] == ["from-env"] * 4
    shown = json.loads(shared_daemon.cli("runs", "show", run["id"], "--json").stdout)
    assert [(k["kind"], k["model"]) for k in shown["children"]] == [
        ("plan", "openai/from-env"),
        ("implement", "openai/from-env"),
        ("critic", "openai/from-env"),
    ]


def test_revise_twice_then_escalate_to_a_human(
    shared_daemon: Daemon, repo: Path, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(
        Reply(text=json.dumps(PLAN)),
        Reply(tool_calls=[call("c1", "apply_patch", patch=FIX)]),
        Reply(text="fixed"),
        verdict("revise", 60, FINDING),
        Reply(tool_calls=[call("d1", "write_file", path="NOTES.md", content="rev 1\n")]),
        Reply(text="revision 1"),
        verdict("revise", 65, FINDING),
        Reply(text="revision 2: nothing more to change"),
        verdict("revise", 68, FINDING),
    )
    out = shared_daemon.cli(
        "run", "pipeline", "make the tests pass", "-w", str(repo), *_model(fake_openai), "--json"
    )
    assert out.returncode == 5, out.stdout[:3000]  # a human must decide
    run = json.loads(out.stdout)
    assert run["status"] == "needs_approval" and run["pending"]["kind"] == "quality_gate"
    shown = json.loads(shared_daemon.cli("runs", "show", run["id"], "--json").stdout)
    steps = [(s["step"], s["action"]) for s in shown["escalations"]]
    assert steps == [(1, "revise"), (2, "revise"), (3, "human")]
    kinds = [k["kind"] for k in shown["children"]]
    assert kinds == ["plan", "implement", "critic", "implement", "critic", "implement", "critic"]
    assert len(shown["assessments"]) == 3
    # Revisions got the findings and continued in the same worktree.
    revision_prompt = str(fake_openai.requests[4].body["messages"])
    assert "docstring" in revision_prompt and "revise" in revision_prompt
    last_implement = shown["children"][5]
    diff = last_implement["output"]["diff"]
    assert "+    return a + b" in diff and "+rev 1" in diff
    # The human accepts: the pipeline succeeds and says so.
    assert shared_daemon.cli("run", "approve", run["id"], "--reason", "good enough").returncode == 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        final = json.loads(shared_daemon.cli("runs", "show", run["id"], "--json").stdout)
        if final["status"] in ("succeeded", "failed"):
            break
        time.sleep(0.2)
    assert final["status"] == "succeeded"
    assert final["escalations"][-1]["action"] == "accepted"


def test_until_plan_stops_after_the_plan(
    shared_daemon: Daemon, repo: Path, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(Reply(text=json.dumps(PLAN)))
    out = shared_daemon.cli(
        "run",
        "pipeline",
        "fix add",
        "-w",
        str(repo),
        "--until",
        "plan",
        *_model(fake_openai),
        "--json",
    )
    assert out.returncode == 0, out.stderr
    run = json.loads(out.stdout)
    assert run["output"]["stage"] == "plan"
    shown = json.loads(shared_daemon.cli("runs", "show", run["id"], "--json").stdout)
    assert [k["kind"] for k in shown["children"]] == ["plan"]
    assert len(fake_openai.requests) == 1


def test_stronger_model_then_rejection_without_a_human(
    shared_daemon: Daemon, repo: Path, fake_openai: FakeOpenAI
) -> None:
    added = shared_daemon.cli(
        "agents",
        "add",
        "strict",
        "--role",
        "implement",
        "--tools",
        "read,write,command",
        "--policy",
        "auto",
        "--max-revisions",
        "0",
        "--stronger-model",
        "openai/fake-strong",
        "--no-human",
    )
    assert added.returncode == 0, added.stderr
    fake_openai.enqueue(
        Reply(text=json.dumps(PLAN)),
        Reply(tool_calls=[call("c1", "apply_patch", patch=FIX)]),
        Reply(text="fixed"),
        verdict("revise", 40, FINDING),
        Reply(text="the stronger model looked again"),
        verdict("fail", 20, FINDING),
    )
    out = shared_daemon.cli(
        "run",
        "pipeline",
        "fix add",
        "-w",
        str(repo),
        "--agent",
        "strict",
        *_model(fake_openai),
        "--json",
    )
    assert out.returncode == 1, out.stderr
    run = json.loads(out.stdout)
    assert run["status"] == "failed" and "quality gate failed" in run["error"]
    shown = json.loads(shared_daemon.cli("runs", "show", run["id"], "--json").stdout)
    assert [s["action"] for s in shown["escalations"]] == ["stronger_model", "rejected"]
    assert fake_openai.requests[4].body["model"] == "fake-strong"


def test_continue_carries_the_conversation(
    shared_daemon: Daemon, repo: Path, fake_openai: FakeOpenAI
) -> None:
    fake_openai.enqueue(Reply(text=json.dumps(PLAN)))
    planned = shared_daemon.cli(
        "run", "plan", "fix add", "-w", str(repo), *_model(fake_openai), "--json"
    )
    assert planned.returncode == 0, planned.stderr
    plan_id = json.loads(planned.stdout)["id"]
    fake_openai.enqueue(Reply(text="nothing to do"))
    out = shared_daemon.cli(
        "run",
        "implement",
        "now do it",
        "-w",
        str(repo),
        "--continue",
        plan_id,
        *_model(fake_openai),
        "--json",
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["thread_id"] == json.loads(planned.stdout)["thread_id"]
    sent = [m.get("content") or "" for m in fake_openai.requests[-1].body["messages"]]
    assert any("Fix the operator" in text for text in sent)  # the plan run's answer
    assert any("now do it" in text for text in sent)
    unknown = shared_daemon.cli(
        "run", "implement", "x", "-w", str(repo), "--continue", "r_nope", *_model(fake_openai)
    )
    assert unknown.returncode == 2 and "no run with id" in unknown.stderr
