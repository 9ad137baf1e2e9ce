"""RELIABILITY D3: a poison job that kills its daemon on every attempt, beside innocent runs.

Real daemons restarted by a supervisor loop whenever they die, real SQLite and PostgreSQL, plan
runs on the fake OpenAI-compatible server. The poison is dead-lettered after its own stalls;
every innocent run succeeds; the poison's retries wait out the backoff (ADR 0026).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FAST_QUEUE, Daemon, kyros_env, start_daemon
from tests.support.fake_openai import FakeOpenAI, Reply
from tests.support.supervisor import spawn, with_store

# Four daemon deaths, each waited out by a lease: ~45 s on SQLite, ~70 s on PostgreSQL (2 cores).
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "greeter"
PLAN = {
    "summary": "Add a flag.",
    "steps": [{"title": "Add it", "detail": "argparse", "files": ["greeter/__main__.py"]}],
    "risks": [],
}
#: With a 1 s base, the n-th crash's retry waits U(0.5, 1) x 2^(n-1) s: large enough to
#: measure against a restart (~2 s) and a 3 s lease.
RETRY_BASE = 1.0


def _poison_run(url: str, ledger: Path) -> str:
    from kyros.core.ids import new_id
    from kyros.core.store import events as events_repo
    from kyros.core.store import jobs as jobs_repo
    from kyros.core.store import runs as runs_repo

    run_id = new_id("r")

    async def create(conn: Any) -> None:
        await runs_repo.insert_run(
            conn, id=run_id, kind="plan", goal="poison", workspace="/tmp", status="queued"
        )
        await events_repo.append(conn, run_id, "run.queued", {})
        job_id = await jobs_repo.enqueue(
            conn, "poison", {"ledger": str(ledger)}, run_id=run_id, max_attempts=3
        )
        await runs_repo.set_fields(conn, run_id, job_id=job_id)

    asyncio.run(with_store(url, create))
    return run_id


def _state(url: str, run_ids: list[str]) -> dict[str, Any]:
    from sqlalchemy import select

    from kyros.core.store import jobs as jobs_repo
    from kyros.core.store.schema import jobs, runs

    async def read(conn: Any) -> dict[str, Any]:
        run_rows = {
            r.id: dict(r._mapping)
            for r in await conn.execute(select(runs).where(runs.c.id.in_(run_ids)))
        }
        job_rows = {
            r.run_id: dict(r._mapping)
            for r in await conn.execute(select(jobs).where(jobs.c.run_id.in_(run_ids)))
        }
        history = await jobs_repo.attempts_of(conn, run_ids=run_ids)
        return {"runs": run_rows, "jobs": job_rows, "history": history}

    state: dict[str, Any] = asyncio.run(with_store(url, read))
    return state


def test_d3_poison_beside_innocents(
    xdg: dict[str, str], db_url: str, tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    workspace = tmp_path / "greeter"
    shutil.copytree(EXAMPLE, workspace)
    ledger = tmp_path / "poison.txt"
    # A slow model: the six first calls wait 30 s for their first token, so all six are in
    # flight when the poison strikes; the retries get their plan after 1 s.
    fake_openai.enqueue(*(Reply(text=json.dumps(PLAN), delay_first_chunk=30) for _ in range(6)))
    fake_openai.default = Reply(text=json.dumps(PLAN), delay_first_chunk=1.0)
    env = kyros_env(
        xdg,
        KYROS_DATABASE_URL=db_url,
        KYROS_PLUGINS="tests.support.jobkinds",
        **{**FAST_QUEUE, "KYROS_RETRY_BASE_SECONDS": str(RETRY_BASE), "KYROS_POLL_SECONDS": "0.2"},
    )
    first = start_daemon(env)
    innocents = []
    for i in range(6):
        out = first.cli(
            "run",
            "plan",
            f"innocent {i}",
            "-w",
            str(workspace),
            "--model",
            "openai/fake-planner",
            "--api-base",
            fake_openai.url,
            "--detach",
        )
        assert out.returncode == 0, out.stderr
        innocents.append(out.stdout.strip())
    fake_openai.wait_for_requests(6, timeout=30)  # every innocent waits on the model
    poison = _poison_run(db_url, ledger)

    # The supervisor: whenever the daemon dies, start another, until every run has ended.
    proc: subprocess.Popen[bytes] = first.proc
    deaths: list[float] = []
    everyone = [*innocents, poison]
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                deaths.append(time.time())
                proc = spawn(env)
            state = _state(db_url, everyone)
            if all(r["finished_at"] is not None for r in state["runs"].values()):
                break
            time.sleep(0.2)
        final = Daemon(env=env, proc=proc, socket=first.socket, log=first.log)
        final.wait_ready()
        shown = final.cli("runs", "show", poison)
    finally:
        if proc.poll() is None:
            Daemon(env=env, proc=proc, socket=first.socket, log=first.log).stop()

    runs, jobs, history = state["runs"], state["jobs"], state["history"]
    statuses = {run_id: runs[run_id]["status"] for run_id in everyone}
    assert all(statuses[r] == "succeeded" for r in innocents), statuses
    assert statuses[poison] == "failed", statuses
    # Dead-lettered after its own stalls: three crashes while it ran alone.
    assert jobs[poison]["status"] == "dead" and jobs[poison]["stalls"] == 3
    assert "dead-lettered" in runs[poison]["error"] and "alone" in runs[poison]["error"]
    # No innocent was charged a stall, though the first crash took every one of them down.
    assert all(jobs[r]["stalls"] == 0 for r in innocents), {r: jobs[r] for r in innocents}
    lost_with_poison = [h for h in history if h["run_id"] in innocents and h["outcome"] == "lost"]
    assert len(lost_with_poison) == 6 and all(h["beside"] == 6 for h in lost_with_poison)
    assert all(jobs[r]["attempts"] == 2 for r in innocents)

    # The poison's history: lost beside the six, then three stalls alone, the last fatal.
    mine = [h for h in history if h["run_id"] == poison]
    assert [(h["outcome"], h["isolated"]) for h in mine] == [
        ("lost", False),
        ("stalled", True),
        ("stalled", True),
        ("dead", True),
    ], mine
    assert len(deaths) == 4, deaths
    # Retry spacing follows the backoff: the n-th crash waits U(0.5, 1) x base x 2^(n-1),
    # and the next attempt starts no earlier.
    starts = [float(line.split()[4]) for line in ledger.read_text().splitlines()]
    assert len(starts) == 4
    for n, (h, next_start) in enumerate(zip(mine, starts[1:], strict=False), start=1):
        wait = (h["retry_at"] - h["created_at"]).total_seconds()
        ceiling = RETRY_BASE * 2 ** (n - 1)
        assert 0.5 * ceiling - 0.01 <= wait <= ceiling + 0.01, (n, wait)
        assert next_start >= h["retry_at"].timestamp() - 0.01, (n, next_start, h["retry_at"])
    # The poison took no innocent down after the first crash: it ran alone from then on (the
    # six "lost" rows above are the only ones), and the ledger says so of each attempt.
    assert [line.endswith("isolated=True") for line in ledger.read_text().splitlines()] == [
        False,
        True,
        True,
        True,
    ]
    assert shown.returncode == 0, shown.stderr
    assert "attempt 1 lost" in shown.stdout and "dead, alone: dead-lettered" in shown.stdout
