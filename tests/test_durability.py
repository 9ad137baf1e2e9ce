"""RELIABILITY D1 (kill -9 under load) and D7 (resumable event streams) against real daemons."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import FAST_QUEUE, kyros_env, start_daemon

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


async def _with_store(url: str, work: Any) -> Any:
    from kyros.core.store.engine import Store

    store = Store(url)
    try:
        async with store.write() as conn:
            return await work(conn)
    finally:
        await store.close()


def _env(xdg: dict[str, str], db_url: str, **extra: str) -> dict[str, str]:
    return kyros_env(
        xdg,
        KYROS_DATABASE_URL=db_url,
        KYROS_PLUGINS="tests.support.jobkinds",
        **{**FAST_QUEUE, **extra},
    )


def _job_counts(url: str) -> dict[str, int]:
    from kyros.core.store import jobs as jobs_repo

    return asyncio.run(_with_store(url, jobs_repo.counts))


def test_d1_kill_9_under_load_loses_nothing(
    xdg: dict[str, str], db_url: str, tmp_path: Path
) -> None:
    seed = int(os.environ.get("KYROS_TEST_SEED", random.randrange(1 << 30)))
    print(f"D1 seed={seed} (replay with KYROS_TEST_SEED={seed})")
    rng = random.Random(seed)
    ledger = tmp_path / "ledger.txt"
    env = _env(xdg, db_url, KYROS_WORKERS="10")
    first = start_daemon(env)

    from kyros.core.store import jobs as jobs_repo

    async def enqueue(conn: Any) -> None:
        payloads = [{"ledger": str(ledger), "seconds": rng.uniform(0.05, 0.4)} for _ in range(100)]
        await jobs_repo.enqueue_many(conn, "ledger", payloads, max_attempts=3)

    asyncio.run(_with_store(db_url, enqueue))
    # The daemon polls for jobs other processes add (poll_seconds); let some run, then kill.
    time.sleep(rng.uniform(0.8, 2.5))
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(10)
    killed_at = time.time()
    second = start_daemon(env)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            counts = _job_counts(db_url)
            if counts.get("succeeded") == 100:
                break
            time.sleep(0.2)
        assert counts == {"succeeded": 100}, counts  # 0 lost, none dead or failed
    finally:
        second.stop()

    async def attempts(conn: Any) -> list[int]:
        return [r["attempts"] for r in await jobs_repo.list_jobs(conn, limit=1000)]

    assert max(asyncio.run(_with_store(db_url, attempts))) <= 2

    # The external ledger: per job, attempts in start order never overlap — each earlier
    # attempt ended before the next began, or died with the first daemon before it.
    runs: dict[int, dict[int, dict[str, Any]]] = defaultdict(dict)
    for line in ledger.read_text().splitlines():
        what, job, token, pid, at = line.split()
        runs[int(job)].setdefault(int(token), {"pid": int(pid)})[what] = float(at)
    assert len(runs) == 100
    first_pid = first.proc.pid
    for job, tries in runs.items():
        assert any("end" in t for t in tries.values()), f"job {job} never finished an attempt"
        ordered = sorted(tries.values(), key=lambda t: t["start"])
        for earlier, later in itertools.pairwise(ordered):
            finished_first = "end" in earlier and earlier["end"] <= later["start"]
            died_first = earlier["pid"] == first_pid and killed_at <= later["start"]
            assert finished_first or died_first, f"job {job}: overlapping attempts {tries}"


def _make_chatter_run(url: str, events: int, pause: float = 0.001) -> str:
    from kyros.core.ids import new_id
    from kyros.core.store import events as events_repo
    from kyros.core.store import jobs as jobs_repo
    from kyros.core.store import runs as runs_repo

    run_id = new_id("r")

    async def create(conn: Any) -> None:
        await runs_repo.insert_run(
            conn, id=run_id, kind="plan", goal="chatter", workspace="/tmp", status="running"
        )
        await events_repo.append(conn, run_id, "run.queued", {})
        await jobs_repo.enqueue(
            conn, "chatter", {"run_id": run_id, "events": events, "pause": pause}, run_id=run_id
        )

    asyncio.run(_with_store(url, create))
    return run_id


def _sse_events(http: httpx.Client, run_id: str, last: int, take: int) -> tuple[list[int], str]:
    """Read up to ``take`` events after ``last``, then drop the connection. Says how it ended:
    ``final`` (the run's last event), ``dropped`` (by us) or ``closed`` (by the daemon)."""
    seqs: list[int] = []
    with http.stream(
        "GET", f"/v1/runs/{run_id}/events", headers={"Last-Event-ID": str(last)}
    ) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data:"):
                event = json.loads(line[5:])
                seqs.append(event["seq"])
                if event["type"] == "run.succeeded":
                    return seqs, "final"
                if len(seqs) >= take:
                    return seqs, "dropped"
    return seqs, "closed"


def test_d7_reconnecting_reader_gets_no_gap_and_no_duplicate(
    xdg: dict[str, str], db_url: str
) -> None:
    seed = int(os.environ.get("KYROS_TEST_SEED", random.randrange(1 << 30)))
    print(f"D7 seed={seed}")
    rng = random.Random(seed)
    d = start_daemon(_env(xdg, db_url))
    try:
        run_id = _make_chatter_run(db_url, 10_000)
        seen: list[int] = []
        reconnects = 0
        transport = httpx.HTTPTransport(uds=str(d.socket))
        with httpx.Client(transport=transport, base_url="http://kyros", timeout=30) as http:
            ends: list[str] = []
            while not ends or ends[-1] != "final":
                got, how = _sse_events(http, run_id, seen[-1] if seen else 0, rng.randint(1, 150))
                seen += got
                ends.append(how)
                reconnects += 1
        # The daemon never closes a stream before the run's final event.
        assert "closed" not in ends, (ends.count("closed"), len(seen), d.log.read_text()[-3000:])
        assert reconnects >= 100, reconnects
        assert seen == list(range(1, len(seen) + 1))  # 0 gaps, 0 duplicates
        assert len(seen) == 10_002  # run.queued + 10,000 + run.succeeded
    finally:
        d.stop()


def test_cli_follower_survives_a_daemon_restart(
    xdg: dict[str, str], db_url: str, tmp_path: Path
) -> None:
    env = _env(xdg, db_url)
    d = start_daemon(env)
    run_id = _make_chatter_run(db_url, 3000, pause=0.01)
    out_file, err_file = tmp_path / "out.jsonl", tmp_path / "err.txt"
    with out_file.open("w") as out_fh, err_file.open("w") as err_fh:
        follower = subprocess.Popen(
            [sys.executable, "-m", "kyros", "runs", "events", run_id, "--jsonl"],
            env=env,
            stdout=out_fh,
            stderr=err_fh,
        )
    try:
        deadline = time.monotonic() + 60
        while not out_file.read_text():  # the follower is connected and streaming
            assert time.monotonic() < deadline and follower.poll() is None, err_file.read_text()
            time.sleep(0.05)
        d.stop()  # SIGTERM: the chatter job is released back to the queue
        d = start_daemon(env)
        follower.wait(timeout=90)
    finally:
        follower.kill()
        d.stop()
    assert follower.returncode == 0, err_file.read_text()
    out = out_file.read_text()
    seqs = [json.loads(line)["seq"] for line in out.splitlines()]
    assert seqs == list(range(1, len(seqs) + 1))
    assert json.loads(out.splitlines()[-1])["type"] == "run.succeeded"
