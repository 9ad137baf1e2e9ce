"""RELIABILITY D5, graceful shutdown that keeps work: SIGTERM while an implement run's command
runs in a daemon terminal (ADR 0027).

Real daemons, a real git repository and a real `pytest` in a real pty; the model is the fake
OpenAI-compatible server. A command that finishes within the grace period reports to the model
as usual; one that cannot is released with its run, runs again after the restart, and the
model never reads of a signal. A released job gives its attempt back.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FAST_QUEUE, Daemon, kyros_env, start_daemon
from tests.support.buggy_repo import call, git, make_repo
from tests.support.fake_openai import FakeOpenAI, Reply

# A daemon start, a litellm import and a pytest start each, twice: ~50 s per test on 2 busy cores.
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]

COMMAND = "python -m pytest -q -p no:cacheprovider tests/test_slow.py"

SLOW_TEST = """import time
from pathlib import Path

MARK = Path({mark!r})


def test_slow():
    before = MARK.read_text() if MARK.exists() else ""
    MARK.write_text(before + "x")
    if not before:  # the first run takes its time; a run after the restart does not
        time.sleep({seconds})
"""


def _repo(tmp_path: Path, seconds: float) -> tuple[Path, Path]:
    repo = make_repo(tmp_path / "repo")
    mark = tmp_path / "runs-of-the-command"
    (repo / "tests" / "test_slow.py").write_text(SLOW_TEST.format(mark=str(mark), seconds=seconds))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "a slow test")
    return repo, mark


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _job(url: str, run_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The run's one job and the history of its attempts that did not succeed."""
    from sqlalchemy import select

    from kyros.core.store import jobs as jobs_repo
    from kyros.core.store.engine import Store
    from kyros.core.store.schema import jobs

    async def read() -> tuple[dict[str, Any], list[dict[str, Any]]]:
        store = Store(url)
        try:
            async with store.read() as conn:
                rows = (await conn.execute(select(jobs).where(jobs.c.run_id == run_id))).all()
                assert len(rows) == 1
                job = dict(rows[0]._mapping)
                return job, await jobs_repo.attempts_of(conn, run_ids=[run_id])
        finally:
            await store.close()

    return asyncio.run(read())


def _start_run(d: Daemon, repo: Path, srv: FakeOpenAI) -> str:
    out = d.cli(
        "run",
        "implement",
        "check the slow test",
        "-w",
        str(repo),
        "--model",
        "openai/fake-coder",
        "--api-base",
        srv.url,
        "--detach",
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def _finished(d: Daemon, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 90
    with d.client() as c:
        while time.monotonic() < deadline:
            run = c.run(run_id)
            if run["status"] in ("succeeded", "failed", "cancelled"):
                return dict(run)
            time.sleep(0.1)
    raise AssertionError(f"run {run_id} did not end: {run['status']}")


def _tool_messages(srv: FakeOpenAI) -> list[str]:
    return [
        str(m["content"])
        for request in srv.requests
        for m in request.body["messages"]
        if m["role"] == "tool"
    ]


@pytest.fixture
def sqlite_env(xdg: dict[str, str]) -> dict[str, str]:
    url = f"sqlite+aiosqlite:///{xdg['XDG_DATA_HOME']}/kyros-test.db"
    return kyros_env(xdg, KYROS_DATABASE_URL=url, **FAST_QUEUE)


def test_sigterm_releases_a_30_s_command_and_the_run_resumes(
    sqlite_env: dict[str, str], tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    repo, mark = _repo(tmp_path, seconds=30)
    env = {**sqlite_env, "KYROS_SHUTDOWN_GRACE_SECONDS": "2"}
    fake_openai.enqueue(
        Reply(tool_calls=[call("c1", "run_command", command=COMMAND)]),
        Reply(text="The slow test passes."),
    )
    d = start_daemon(env)
    try:
        run_id = _start_run(d, repo, fake_openai)
        _wait(mark.exists, 60, "the command to start")
        stopped_at = time.monotonic()
        assert d.stop() == 0  # SIGTERM: 2 s of grace cannot hold a 30 s command
        assert time.monotonic() - stopped_at < 15
        assert len(fake_openai.requests) == 1
    finally:
        d.stop()
    again = start_daemon(env)
    try:
        run = _finished(again, run_id)
        with again.client() as c:
            events = [e["type"] for e in c.events(run_id, follow=False)]
    finally:
        again.stop()
    assert run["status"] == "succeeded", run.get("error")
    assert mark.read_text() == "xx"  # cut off once, then run again to the end
    # The model read one result of its command, the real one; never a signal.
    told = _tool_messages(fake_openai)
    assert len(told) == 1 and told[0].startswith("exit code 0") and "1 passed" in told[0]
    assert len(fake_openai.requests) == 2  # no turn was asked twice
    assert "signal" not in json.dumps([r.body for r in fake_openai.requests])
    assert "job.released" in events and events.count("run.started") == 1
    job, history = _job(env["KYROS_DATABASE_URL"], run_id)
    assert job["attempts"] == 1 and job["stalls"] == 0 and job["status"] == "succeeded"
    assert [h["outcome"] for h in history] == ["released"]


def test_a_command_that_ends_within_the_grace_is_reported_and_not_run_again(
    sqlite_env: dict[str, str], tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    repo, mark = _repo(tmp_path, seconds=3)
    env = {**sqlite_env, "KYROS_SHUTDOWN_GRACE_SECONDS": "20"}
    fake_openai.enqueue(
        Reply(tool_calls=[call("c1", "run_command", command=COMMAND)]),
        Reply(text="The slow test passes."),
    )
    d = start_daemon(env)
    try:
        run_id = _start_run(d, repo, fake_openai)
        _wait(mark.exists, 60, "the command to start")
        assert d.stop(timeout=40) == 0  # the command's 3 s fit the grace
        # Its result is in; the next turn was left for after the restart.
        assert len(fake_openai.requests) == 1
    finally:
        d.stop()
    again = start_daemon(env)
    try:
        run = _finished(again, run_id)
    finally:
        again.stop()
    assert run["status"] == "succeeded", run.get("error")
    assert mark.read_text() == "x"  # it ran once
    told = _tool_messages(fake_openai)
    assert len(told) == 1 and told[0].startswith("exit code 0") and "1 passed" in told[0]
    assert len(fake_openai.requests) == 2
    job, history = _job(env["KYROS_DATABASE_URL"], run_id)
    assert job["attempts"] == 1 and [h["outcome"] for h in history] == ["released"]
