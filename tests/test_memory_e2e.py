"""Conversation memory end to end: `--continue` sends the thread's earlier turns to the model
(across a daemon restart too), long threads are compacted without losing a message, and
`kyros threads ls|show` lists conversations with their runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Daemon, start_daemon
from tests.support.buggy_repo import make_repo
from tests.support.fake_openai import FakeOpenAI, Reply

pytestmark = pytest.mark.e2e


def plan(title: str) -> Reply:
    body = {"summary": title, "steps": [{"title": title, "detail": "do it"}], "risks": []}
    return Reply(text=json.dumps(body))


def planned(d: Daemon, repo: Path, goal: str, *extra: str) -> dict[str, Any]:
    out = d.cli("run", "plan", goal, "-w", str(repo), *extra, "--json")
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout))


def texts(request: Any) -> list[tuple[str, str]]:
    return [(m["role"], m.get("content") or "") for m in request.body["messages"]]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "calc-repo")


def test_three_continued_plans_carry_the_conversation_across_a_restart(
    daemon_env: dict[str, str], repo: Path, fake_openai: FakeOpenAI
) -> None:
    model = ["--model", "openai/fake-planner", "--api-base", fake_openai.url]
    fake_openai.enqueue(plan("First step alpha"), plan("Second step beta"), plan("Third gamma"))
    d = start_daemon(daemon_env)
    try:
        one = planned(d, repo, "goal one: add a flag", *model)
        two = planned(d, repo, "goal two: and document it", *model, "--continue", one["id"])
        d.stop()
        d = start_daemon(daemon_env)  # the conversation lives in the store, not the daemon
        three = planned(d, repo, "goal three: and test it", *model, "--continue", two["id"])
        assert one["thread_id"] == two["thread_id"] == three["thread_id"]
        assert len(fake_openai.requests) == 3
        first, second, third = (texts(r) for r in fake_openai.requests)
        assert [role for role, _ in first] == ["system", "user"]
        assert [role for role, _ in third] == [
            "system", "user", "assistant", "user", "assistant", "user",
        ]  # fmt: skip
        assert third[1] == ("user", "goal one: add a flag")
        assert "First step alpha" in third[2][1]
        assert third[3] == ("user", "goal two: and document it")
        assert "Second step beta" in third[4][1]
        assert third[5][1].startswith("## Goal\ngoal three")
        assert second[1:3] == third[1:3]  # the first turn, sent again as it was

        shown = json.loads(d.cli("threads", "show", three["id"], "--json").stdout)
        assert shown["id"] == one["thread_id"]
        assert [r["id"] for r in shown["runs"]] == [one["id"], two["id"], three["id"]]
        assert [m["role"] for m in shown["messages"]] == ["user", "assistant"] * 3
        listed = json.loads(d.cli("threads", "ls", "--json").stdout)
        assert listed[0]["id"] == one["thread_id"] and listed[0]["messages_count"] == 6
        text = d.cli("threads", "show", one["thread_id"])
        assert text.returncode == 0 and three["id"] in text.stdout
        missing = d.cli("threads", "show", "t_nope")
        assert missing.returncode != 0 and "no thread or run" in missing.stderr
    finally:
        d.stop()


def test_a_long_thread_is_compacted_and_keeps_every_message(
    daemon_env: dict[str, str], repo: Path, fake_openai: FakeOpenAI
) -> None:
    # A 2,000-token window: two 3,000-character goals (~1,600 tokens of chat) pass the 60 %
    # mark, so the third run first summarizes the oldest turns.
    models = {"tiny": {"model": "openai/tiny", "api_base": fake_openai.url, "context_window": 2000}}
    d = start_daemon({**daemon_env, "KYROS_MODELS": json.dumps(models)})
    try:
        long_one = "goal one " + "alpha " * 500
        long_two = "goal two " + "beta " * 600
        fake_openai.enqueue(
            plan("one"), plan("two"), Reply(text="SUMMARY: alpha goal planned"), plan("three")
        )
        one = planned(d, repo, long_one, "--model", "tiny")
        two = planned(d, repo, long_two, "--model", "tiny", "--continue", one["id"])
        three = planned(d, repo, "goal three", "--model", "tiny", "--continue", two["id"])
        assert len(fake_openai.requests) == 4
        summarize, last = fake_openai.requests[2], fake_openai.requests[3]
        assert "alpha alpha" in summarize.body["messages"][1]["content"]
        sent = texts(last)
        assert sent[1] == (
            "user",
            "Summary of the conversation so far:\nSUMMARY: alpha goal planned",
        )
        assert not any("alpha alpha" in text for _, text in sent)  # summarized, not re-sent
        assert any(text == long_two for _, text in sent)  # the newer turn is kept verbatim
        events = json.loads(d.cli("runs", "events", three["id"], "--no-follow", "--json").stdout)
        assert any(e["type"] == "memory.compacted" for e in events)

        shown = json.loads(d.cli("threads", "show", three["id"], "--json").stdout)
        roles = [m["role"] for m in shown["messages"]]
        assert roles == ["user", "assistant", "user", "assistant", "summary", "user", "assistant"]
        summary = shown["messages"][4]
        assert summary["meta"]["upto"] == shown["messages"][1]["id"]
        # The originals stay: the first goal is still there, whole (shown cut at 2,000 chars).
        assert shown["messages"][0]["content"] == long_one[:2000]
        assert shown["messages"][0]["truncated"] is True
    finally:
        d.stop()
