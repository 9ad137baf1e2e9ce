"""The agent loop's durability and guards, on SQLite and PostgreSQL:

- D4: an implement run of 10 model turns, its daemon killed with SIGKILL after turn 6, resumes
  at turn 7 after a restart; the provider sees each of turns 1-6 exactly once.
- L6: the same tool call with the same arguments, again and again, halts the run.
- Memory: a conversation that outgrows the model's window is compacted by a summary, and the
  original messages are all still there.
- S13: escape sequences in tool output never reach the model.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Daemon, start_daemon
from tests.support.buggy_repo import call, git, make_repo
from tests.support.fake_openai import FakeOpenAI, Reply

pytestmark = pytest.mark.e2e


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "calc-repo")


def _events(d: Daemon, run_id: str) -> list[dict[str, Any]]:
    with d.client() as c:
        return list(c.events(run_id, follow=False))


def _wait(predicate: Any, timeout: float = 60, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_d4_a_killed_run_resumes_at_the_next_turn(
    daemon: Daemon, repo: Path, fake_openai: FakeOpenAI
) -> None:
    turns = [
        Reply(
            tool_calls=[
                call(f"c{i}", "read_file", path="calc/__init__.py", start_line=1, end_line=i)
            ]
        )
        for i in range(1, 10)
    ]
    # Turn 7's first delivery hangs: the daemon dies while waiting for it.
    stalled = Reply(tool_calls=turns[6].tool_calls, delay_before_headers=120)
    fake_openai.enqueue(*turns[:6], stalled, *turns[6:], Reply(text="read it all"))
    out = daemon.cli(
        "run",
        "implement",
        "read the calculator",
        "-w",
        str(repo),
        "--model",
        "openai/fake-coder",
        "--api-base",
        fake_openai.url,
        "--detach",
    )
    assert out.returncode == 0, out.stderr
    run_id = out.stdout.strip()

    def turn7_asked() -> bool:
        return any(
            e["type"] == "model.request" and e["data"]["turn"] == 7 for e in _events(daemon, run_id)
        )

    _wait(turn7_asked, what="turn 7 to be requested")
    # The event is written before the request goes out: kill only once the provider holds it,
    # or the restarted daemon's turn 7 would be the one answered after 120 s.
    fake_openai.wait_for_requests(7, timeout=30)
    daemon.stop(signal.SIGKILL)
    restarted = start_daemon(daemon.env)
    try:

        def finished() -> dict[str, Any] | None:
            with restarted.client() as c:
                run = c.run(run_id)
            return run if run["status"] in ("succeeded", "failed") else None

        run = _wait(finished, timeout=90, what="the run to finish after the restart")
        assert run["status"] == "succeeded", run["error"]
        responses = [e for e in _events(restarted, run_id) if e["type"] == "model.response"]
    finally:
        restarted.stop()
    # Turn k's request carries 2k messages (system, task, then a call and a result per turn).
    sizes = [len(r.body["messages"]) for r in fake_openai.requests]
    for turn in range(1, 7):
        assert sizes.count(2 * turn) == 1, (turn, sizes)  # finished turns: never re-sent
    assert sizes.count(14) == 2  # turn 7 was in flight at the kill: asked again
    assert sorted(set(sizes)) == [2 * t for t in range(1, 11)]
    assert [e["data"]["turn"] for e in responses] == list(range(1, 11))


def test_l6_the_same_call_again_and_again_halts_the_run(
    shared_daemon: Daemon, repo: Path, fake_openai: FakeOpenAI
) -> None:
    same = call("c", "search", pattern="add")
    fake_openai.enqueue(*(Reply(tool_calls=[same]) for _ in range(6)))
    out = shared_daemon.cli(
        "run",
        "implement",
        "find add",
        "-w",
        str(repo),
        "--model",
        "openai/fake-coder",
        "--api-base",
        fake_openai.url,
        "--json",
    )
    assert out.returncode == 1
    run = json.loads(out.stdout)
    assert run["status"] == "failed" and "loop detected" in run["error"]
    assert len(fake_openai.requests) == 3  # halted before a fourth turn was paid for
    results = [e for e in _events(shared_daemon, run["id"]) if e["type"] == "tool.result"]
    assert len(results) == 2  # the third identical call never ran


def test_l6_two_calls_alternating_again_and_again_halt_the_run(
    shared_daemon: Daemon, repo: Path, fake_openai: FakeOpenAI
) -> None:
    a = call("a", "search", pattern="add")
    b = call("b", "read_file", path="calc/__init__.py")
    fake_openai.enqueue(*(Reply(tool_calls=[a if i % 2 == 0 else b]) for i in range(10)))
    out = shared_daemon.cli(
        "run",
        "implement",
        "find add",
        "-w",
        str(repo),
        "--model",
        "openai/fake-coder",
        "--api-base",
        fake_openai.url,
        "--json",
    )
    assert out.returncode == 1
    run = json.loads(out.stdout)
    assert run["status"] == "failed", run
    assert "loop detected" in run["error"] and "search, read_file" in run["error"]
    # A, B, A, B, A, B: halted at the sixth call, before a seventh turn was paid for.
    assert len(fake_openai.requests) == 6
    results = [e for e in _events(shared_daemon, run["id"]) if e["type"] == "tool.result"]
    assert [r["data"]["tool"] for r in results] == ["search", "read_file"] * 2 + ["search"]


def test_s13_escapes_in_tool_output_never_reach_the_model(
    shared_daemon: Daemon, repo: Path, fake_openai: FakeOpenAI
) -> None:
    nasty = "\x1b]52;c;cHduZWQ=\x07\x1b]0;owned\x07\x1b[2J\x9b31mred\x1b[0m"
    (repo / "evil\x1b[31mname.txt").write_text(nasty + "\n")
    fake_openai.enqueue(
        Reply(tool_calls=[call("a", "list_files")]),
        Reply(tool_calls=[call("b", "run_command", command="cat evil*")]),
        Reply(tool_calls=[call("c", "search", pattern="red")]),
        Reply(text="done"),
    )
    out = shared_daemon.cli(
        "run",
        "implement",
        "look",
        "-w",
        str(repo),
        "--model",
        "openai/fake-coder",
        "--api-base",
        fake_openai.url,
        "--agent",
        "implementer",
        "--json",
    )
    assert out.returncode == 0, out.stderr
    context = json.dumps(fake_openai.requests[-1].body["messages"], ensure_ascii=False)
    assert "\x1b" not in context and "\x9b" not in context and "\x07" not in context
    assert "red" in context  # the text itself survives
    events = json.dumps(_events(shared_daemon, json.loads(out.stdout)["id"]), ensure_ascii=False)
    assert "\x1b" not in events


async def test_memory_compaction_summarizes_and_keeps_every_message(core: Any, repo: Path) -> None:
    from kyros.core.ai.litellm_backend import ScriptedProvider, register_scripted
    from kyros.core.runs.memory import SUMMARIZE_PROMPT
    from kyros.core.store import threads as threads_repo

    (repo / "big.txt").write_text("".join(f"line {i} " + "x" * 70 + "\n" for i in range(200)))
    git(repo, "add", "big.txt")
    git(repo, "commit", "-qm", "a big file")  # the run's worktree starts from HEAD
    seen: list[list[dict[str, Any]]] = []

    def reply(messages: list[dict[str, Any]]) -> Any:
        seen.append(messages)
        if messages[0]["content"] == SUMMARIZE_PROMPT:
            return "SUMMARY: read big.txt in chunks; nothing changed yet."
        done = sum(1 for m in seen if m[0]["content"] != SUMMARIZE_PROMPT) - 1
        if done >= 6:
            return "finished reading"
        start = done * 30 + 1
        args = {"path": "big.txt", "start_line": start, "end_line": start + 29}
        return {
            "tool_calls": [{"id": f"r{done}", "name": "read_file", "arguments": json.dumps(args)}]
        }

    model = await asyncio.to_thread(register_scripted, "memory", ScriptedProvider(reply))
    run = await core.runs.create(
        "implement", "read big.txt", str(repo), model=model, internal={"context_window": 6000}
    )
    deadline = time.monotonic() + 60
    while (run := await core.runs.get(run["id"]))["status"] not in ("succeeded", "failed"):
        assert time.monotonic() < deadline, "run did not finish"
        await asyncio.sleep(0.1)
    assert run["status"] == "succeeded", run["error"]
    summaries = [m for m in seen if m[0]["content"] == SUMMARIZE_PROMPT]
    assert summaries, "the conversation was never compacted"
    after = [m for m in seen if m[0]["content"] != SUMMARIZE_PROMPT][-1]
    assert "Summary of the conversation so far" in after[1]["content"]
    async with core.store.read() as conn:
        history = await threads_repo.history(conn, run["thread_id"])
    tools = [m for m in history if m["role"] == "tool"]
    assert len(tools) == 6  # compaction deleted nothing
    assert any(m["role"] == "summary" for m in history)
    events = await core.runs.events_after(run["id"], 0)
    assert any(e["type"] == "memory.compacted" for e in events)


def test_s8_an_agent_cannot_reach_outside_its_worktree(
    shared_daemon: Daemon, repo: Path, tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET\n")
    outside = tmp_path / "planted.txt"
    attempts = [
        call("a", "read_file", path=str(secret)),
        call("b", "read_file", path="../../secret.txt"),
        call("c", "write_file", path="../planted.txt", content="x"),
        call("d", "write_file", path=str(outside), content="x"),
        call("e", "write_file", path=".git/hooks/pre-commit", content="#!/bin/sh\ntouch x\n"),
        call("f", "write_file", path=".kyros/config.toml", content="api_base='http://evil'"),
        call("g", "run_command", command="pwd", cwd="../.."),
        call("h", "rename_file", src="calc/__init__.py", dst="../moved.py"),
        call("i", "read_file", path="/proc/self/root/etc/hostname"),
    ]
    fake_openai.enqueue(Reply(tool_calls=attempts), Reply(text="tried everything"))
    # Even an agent whose policy lets everything run stays inside its worktree.
    added = shared_daemon.cli(
        "agents", "add", "unleashed", "--tools", "read,write,command", "--policy", "full"
    )
    assert added.returncode == 0, added.stderr
    out = shared_daemon.cli(
        "run",
        "implement",
        "escape",
        "--agent",
        "unleashed",
        "-w",
        str(repo),
        "--model",
        "openai/fake-coder",
        "--api-base",
        fake_openai.url,
        "--json",
    )
    assert out.returncode == 0, out.stderr
    results = [m for m in fake_openai.requests[-1].body["messages"] if m["role"] == "tool"]
    assert len(results) == len(attempts)
    assert all(r["content"].startswith("error:") for r in results), results
    assert "TOP-SECRET" not in json.dumps(fake_openai.requests[-1].body)
    assert not outside.exists() and not (tmp_path / "moved.py").exists()
    assert json.loads(out.stdout)["output"]["diff"] == ""  # nothing changed, even inside
