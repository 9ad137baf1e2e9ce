"""The fault suite run longer: a daemon under load stopped at random instants, by SIGKILL or by
SIGTERM, and restarted, on SQLite and PostgreSQL (RELIABILITY D1, D3, D5).

The normal suite runs a short version (2 kill points). ``nox -s soak`` runs the long one, marked
``soak``: ``KYROS_SOAK_ROUNDS`` kill points (default 12) with a poison job among the innocents.
Every run prints its seed; ``KYROS_TEST_SEED=N`` replays it.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import signal
import subprocess
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FAST_QUEUE, kyros_env, start_daemon
from tests.support.supervisor import spawn, with_store

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1800)]

MAX_STALLS = 3


def _enqueue(url: str, rng: random.Random, ledger: Path, n: int) -> None:
    from kyros.core.store import jobs as jobs_repo

    async def work(conn: Any) -> None:
        payloads = [{"ledger": str(ledger), "seconds": rng.uniform(0.05, 0.6)} for _ in range(n)]
        await jobs_repo.enqueue_many(conn, "ledger", payloads, max_attempts=3)

    asyncio.run(with_store(url, work))


def _poison(url: str, ledger: Path) -> int:
    from kyros.core.store import jobs as jobs_repo

    async def work(conn: Any) -> int:
        return await jobs_repo.enqueue(conn, "poison", {"ledger": str(ledger)})

    job_id: int = asyncio.run(with_store(url, work))
    return job_id


def _jobs(url: str) -> tuple[list[dict[str, Any]], dict[int, list[dict[str, Any]]]]:
    from sqlalchemy import select

    from kyros.core.store import jobs as jobs_repo
    from kyros.core.store.schema import job_attempts

    async def work(conn: Any) -> tuple[list[dict[str, Any]], dict[int, list[dict[str, Any]]]]:
        rows = await jobs_repo.list_jobs(conn, limit=100_000)
        history: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for r in await conn.execute(select(job_attempts).order_by(job_attempts.c.id)):
            history[int(r.job_id)].append(dict(r._mapping))
        return rows, history

    result: tuple[list[dict[str, Any]], dict[int, list[dict[str, Any]]]] = asyncio.run(
        with_store(url, work)
    )
    return result


def _stop(proc: subprocess.Popen[bytes], sig: int) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
        raise AssertionError("the daemon did not stop within 30 s of SIGTERM") from None


@pytest.mark.parametrize(
    "rounds",
    [pytest.param(2, id="short"), pytest.param(0, id="long", marks=pytest.mark.soak)],
)
def test_random_kill_points_lose_nothing(
    xdg: dict[str, str], db_url: str, tmp_path: Path, rounds: int
) -> None:
    long = rounds == 0
    rounds = rounds or int(os.environ.get("KYROS_SOAK_ROUNDS", "12"))
    seed = int(os.environ.get("KYROS_TEST_SEED", random.randrange(1 << 30)))
    print(f"soak seed={seed} rounds={rounds} (replay with KYROS_TEST_SEED={seed})")
    rng = random.Random(seed)
    ledger, poison_ledger = tmp_path / "ledger.txt", tmp_path / "poison.txt"
    env = kyros_env(
        xdg,
        KYROS_DATABASE_URL=db_url,
        KYROS_PLUGINS="tests.support.jobkinds",
        KYROS_WORKERS="8",
        KYROS_POLL_SECONDS="0.2",
        KYROS_SHUTDOWN_GRACE_SECONDS="1",
        KYROS_MAX_STALLS=str(MAX_STALLS),
        **FAST_QUEUE,
    )
    proc = start_daemon(env).proc  # ready: the store is migrated
    kills: list[tuple[str, int, float]] = []  # (how, pid, when) of every daemon that ended
    poison = None
    try:
        _enqueue(db_url, rng, ledger, 40)
        if long:
            poison = _poison(db_url, poison_ledger)
        for _ in range(rounds):
            time.sleep(rng.uniform(0.5, 3.0))
            _enqueue(db_url, rng, ledger, 15)
            if proc.poll() is not None:  # the poison got there first
                kills.append(("poison", proc.pid, time.time()))
            else:
                how = rng.choice(["SIGKILL", "SIGKILL", "SIGTERM"])
                _stop(proc, getattr(signal, how))
                kills.append((how, proc.pid, time.time()))
            proc = spawn(env)
        deadline = time.monotonic() + (600 if long else 120)
        while True:
            if proc.poll() is not None:
                kills.append(("poison", proc.pid, time.time()))
                proc = spawn(env)
            rows, history = _jobs(db_url)
            if all(r["status"] in ("succeeded", "dead", "failed") for r in rows):
                break
            assert time.monotonic() < deadline, {r["status"] for r in rows}
            time.sleep(0.3)
    finally:
        _stop(proc, signal.SIGTERM)
    print(f"soak seed={seed}: {len(rows)} jobs; ends: {[how for how, _, _ in kills]}")

    hard = sum(1 for how, _, _ in kills if how != "SIGTERM")  # deaths that cost attempts
    innocents = [r for r in rows if r["id"] != poison]
    assert len(innocents) == 40 + 15 * rounds  # 0 lost
    for r in innocents:
        own = history.get(r["id"], [])
        # A released attempt is given back; only a daemon's death can cost one.
        assert r["attempts"] <= 1 + hard and r["stalls"] <= hard, (r, own)
        if r["status"] != "succeeded":
            # Only a job its daemon died under MAX_STALLS times while it ran alone.
            alone = [h for h in own if h["outcome"] in ("stalled", "dead")]
            assert r["status"] == "dead" and len(alone) == MAX_STALLS, (r, own)
    if poison is not None:
        mine = history[poison]
        assert [h["outcome"] for h in mine][-1] == "dead", mine
        assert sum(h["outcome"] in ("stalled", "dead") for h in mine) == MAX_STALLS

    # The external ledger: per job, attempts never overlap; an attempt without an end died
    # with its daemon (SIGKILL, or the poison) before the next one began.
    runs: dict[int, dict[int, dict[str, Any]]] = defaultdict(dict)
    for line in ledger.read_text().splitlines():
        what, job, token, pid, at = line.split()
        runs[int(job)].setdefault(int(token), {"pid": int(pid)})[what] = float(at)
    # When a daemon was seen dead (a poison's kill, a little after it): its successor, where
    # any later attempt runs, was started after that.
    died_at = {pid: when for _, pid, when in kills}
    for job, tries in runs.items():
        ordered = sorted(tries.values(), key=lambda t: t["start"])
        for earlier, later in itertools.pairwise(ordered):
            finished_first = "end" in earlier and earlier["end"] <= later["start"]
            died_first = (
                "end" not in earlier and died_at.get(earlier["pid"], 1e18) <= later["start"]
            )
            assert finished_first or died_first, f"job {job}: overlapping attempts {tries}"
