"""Worktree hygiene end to end: a run's worktree goes when its change is applied or discarded,
when `kyros runs clean` is asked, and after the retention period; the diff stays.

CLI → real daemon → implement runs against a fake OpenAI-compatible server → real git
worktrees of a real repository, checked with `git worktree list` and `git branch`.
"""

from __future__ import annotations

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


def _worktrees(repo: Path) -> list[str]:
    """Linked worktrees of ``repo`` (its own checkout left out)."""
    listing = git(repo, "worktree", "list", "--porcelain")
    tops = [line.split(" ", 1)[1] for line in listing.splitlines() if line.startswith("worktree ")]
    return [t for t in tops if Path(t).resolve() != repo.resolve()]


def _branches(repo: Path) -> list[str]:
    return git(repo, "branch", "--list", "kyros/*", "--format=%(refname:short)").split()


def _implement(d: Daemon, repo: Path, srv: FakeOpenAI, name: str) -> dict[str, Any]:
    """One implement run that writes ``notes/<name>.txt`` and ends (through the API: twenty
    CLI processes would cost ~1 s of start-up each on a busy machine)."""
    srv.enqueue(
        Reply(tool_calls=[call("w", "write_file", path=f"notes/{name}.txt", content=name)]),
        Reply(text=f"wrote {name}"),
    )
    body = {
        "goal": f"write note {name}",
        "workspace": str(repo),
        "model": "openai/fake-coder",
        "api_base": srv.url,
    }
    with d.client() as c:
        run_id = c.create_run("implement", body)["id"]
        deadline = time.monotonic() + 60
        while (run := c.run(run_id))["status"] in ("queued", "running"):
            assert time.monotonic() < deadline, f"run {run_id} did not end"
            time.sleep(0.05)
    assert run["status"] == "succeeded", run
    return dict(run)


def _events(d: Daemon, run_id: str) -> list[dict[str, Any]]:
    """All of a run's events, also those after its final one (the client stops there)."""
    events: list[dict[str, Any]] = []
    with d.client() as c:
        while more := list(
            c.events(run_id, after=events[-1]["seq"] if events else 0, follow=False)
        ):
            events += more
    return events


def test_twenty_runs_applied_or_discarded_leave_no_worktree(
    shared_daemon: Daemon, repo: Path, fake_openai: FakeOpenAI
) -> None:
    runs = [_implement(shared_daemon, repo, fake_openai, f"n{i}") for i in range(20)]
    assert len(_worktrees(repo)) == 20 and len(_branches(repo)) == 20
    # The first of each through the CLI, the rest through the API (the same route).
    out = shared_daemon.cli("run", "apply", runs[0]["id"], "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["worktree_removed"] is True
    out = shared_daemon.cli("runs", "discard", runs[1]["id"], "--json")
    assert out.returncode == 0, out.stderr
    assert [r["run_id"] for r in json.loads(out.stdout)["removed"]] == [runs[1]["id"]]
    with shared_daemon.client() as c:
        for i, run in enumerate(runs[2:], start=2):
            if i % 2 == 0:
                assert c.apply(run["id"])["worktree_removed"] is True
            else:
                assert [r["run_id"] for r in c.discard(run["id"])["removed"]] == [run["id"]]
    assert _worktrees(repo) == [] and _branches(repo) == []
    # Applied changes are in the user's tree; discarded ones are not.
    notes = sorted(p.name for p in (repo / "notes").iterdir())
    assert notes == sorted(f"n{i}.txt" for i in range(0, 20, 2))
    # The diff outlives the worktree; a discarded change can no longer be applied.
    diff = shared_daemon.cli("runs", "diff", runs[0]["id"])
    assert diff.returncode == 0 and "notes/n0.txt" in diff.stdout
    again = shared_daemon.cli("run", "apply", runs[1]["id"])
    assert again.returncode != 0 and "discarded" in again.stderr
    removed = [e for e in _events(shared_daemon, runs[1]["id"]) if e["type"] == "worktree.removed"]
    assert [e["data"]["reason"] for e in removed] == ["discarded"]


def test_runs_clean_removes_the_rest_and_keeps_a_branch_with_commits(
    daemon: Daemon, repo: Path, fake_openai: FakeOpenAI
) -> None:
    plain = _implement(daemon, repo, fake_openai, "plain")
    committed = _implement(daemon, repo, fake_openai, "committed")
    # The run (as an agent may) committed in its worktree: those commits are only there.
    top = Path(committed["output"]["sandbox"]["root"])
    git(top, "add", "-A")
    git(top, "commit", "-q", "-m", "the run's own commit")
    assert len(_worktrees(repo)) == 2

    young = daemon.cli("runs", "clean", "--older-than", "1h", "--json")
    assert young.returncode == 0, young.stderr
    assert json.loads(young.stdout) == {"removed": []}  # both ended seconds ago
    bad = daemon.cli("runs", "clean", "--older-than", "soon")
    assert bad.returncode == 2 and "not a duration" in bad.stderr

    out = daemon.cli("runs", "clean", "--json")
    assert out.returncode == 0, out.stderr
    removed = {r["run_id"]: r for r in json.loads(out.stdout)["removed"]}
    assert set(removed) == {plain["id"], committed["id"]}
    assert removed[plain["id"]]["branch_kept"] is False
    assert removed[committed["id"]]["branch_kept"] is True
    assert _worktrees(repo) == []
    assert _branches(repo) == [f"kyros/{committed['id']}"]
    # Not applied, not discarded: the change can still be applied from its stored diff.
    applied = daemon.cli("run", "apply", plain["id"])
    assert applied.returncode == 0, applied.stderr
    assert (repo / "notes" / "plain.txt").read_text() == "plain"


def test_worktrees_past_their_retention_are_removed_by_the_daemon(
    daemon: Daemon, repo: Path, fake_openai: FakeOpenAI
) -> None:
    run = _implement(daemon, repo, fake_openai, "old")
    # Another run stays active (its model never answers): its worktree must stay.
    fake_openai.default = Reply.silent()
    out = daemon.cli(
        "run",
        "implement",
        "never answered",
        "-w",
        str(repo),
        "--model",
        "openai/fake-coder",
        "--api-base",
        fake_openai.url,
        "--detach",
    )
    assert out.returncode == 0, out.stderr
    active = out.stdout.strip()
    deadline = time.monotonic() + 30
    while len(_worktrees(repo)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    # Killed (a graceful stop would wait for the hung call): the active run stays unfinished.
    daemon.stop(signal.SIGKILL)
    time.sleep(1.0)
    # A retention of ~0.5 s: the run that ended is past it when the daemon starts again.
    restarted = start_daemon({**daemon.env, "KYROS_WORKTREE_RETENTION_DAYS": str(0.5 / 86400)})
    try:
        deadline = time.monotonic() + 30
        while len(_worktrees(repo)) > 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        gone = [e for e in _events(restarted, run["id"]) if e["type"] == "worktree.removed"]
        left = _worktrees(repo)
        with restarted.client() as c:
            status = c.run(active)["status"]
    finally:
        restarted.stop(signal.SIGKILL)
    assert [Path(t).name for t in left] == [active], left  # the active run's, only
    assert status in ("queued", "running")
    assert _branches(repo) == [f"kyros/{active}"]
    assert [e["data"]["reason"] for e in gone] == ["expired"]
