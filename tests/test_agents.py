"""Agents over the CLI and API: built-ins, add/show/edit/rm, live status, policy decisions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Daemon

pytestmark = pytest.mark.e2e


def _json(d: Daemon, *args: str) -> object:
    out = d.cli(*args, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_builtin_agents_and_their_live_status(shared_daemon: Daemon) -> None:
    agents = {a["name"]: a for a in _json(shared_daemon, "agents", "list")}  # type: ignore[union-attr]
    assert {"planner", "implementer", "critic"} <= set(agents)
    assert agents["planner"]["approval_policy"] == "read-only"
    assert agents["implementer"]["approval_policy"] == "auto"
    assert agents["implementer"]["escalation"]["max_revisions"] == 2
    # No provider key in the test environment and no default model: nobody can be called.
    assert agents["critic"]["status"] == "offline"


def test_add_show_edit_remove(shared_daemon: Daemon, tmp_path: Path) -> None:
    d = shared_daemon
    added = _json(
        d,
        "agents",
        "add",
        "reviewer-2",
        "--role",
        "critic",
        "--model",
        "demo",
        "--policy",
        "read-only",
        "--max-turns",
        "7",
        "--allow",
        "make lint",
    )
    assert added["limits"]["max_turns"] == 7  # type: ignore[index]
    assert added["limits"]["max_tool_calls"] == 120  # defaults fill the rest  # type: ignore[index]
    assert added["status"] == "idle"  # type: ignore[index]  # demo needs no key
    edited = _json(d, "agents", "edit", "reviewer-2", "--max-tool-calls", "3", "--pause")
    assert edited["limits"] == {**added["limits"], "max_tool_calls": 3}  # type: ignore[index]
    assert edited["paused"] is True  # type: ignore[index]
    # A paused agent takes no new runs.
    refused = d.cli("run", "plan", "x", "-w", str(tmp_path), "--agent", "reviewer-2", "-m", "demo")
    assert refused.returncode == 2 and "paused" in refused.stderr
    shown = d.cli("agents", "show", "reviewer-2")
    assert "--max-tool-calls" in shown.stdout and "3" in shown.stdout  # the flag's own name
    assert "--allow" in shown.stdout and "make lint" in shown.stdout
    assert d.cli("agents", "rm", "reviewer-2").returncode == 0
    gone = d.cli("agents", "show", "reviewer-2")
    assert gone.returncode == 2 and "no agent named" in gone.stderr


def test_bad_agent_input_is_a_clear_error(shared_daemon: Daemon) -> None:
    d = shared_daemon
    builtin = d.cli("agents", "rm", "planner")
    assert builtin.returncode == 2 and "built in" in builtin.stderr
    policy = d.cli("agents", "add", "x1", "--policy", "yolo")
    assert policy.returncode == 2 and "--policy 'yolo'" in policy.stderr
    assert "approval_policy" not in policy.stderr and "read-only" in policy.stderr
    name = d.cli("agents", "add", "Bad Name!")
    assert name.returncode == 2
    dup = d.cli("agents", "add", "critic")
    assert dup.returncode == 2 and "exists" in dup.stderr
    nothing = d.cli("agents", "edit", "critic")
    assert nothing.returncode == 2 and "nothing to change" in nothing.stderr
