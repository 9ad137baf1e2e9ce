"""Jobs a killed daemon held: a new daemon on the same machine and SQLite store re-queues them
at once, without waiting for their leases to run out; a live owner's leases are left alone."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from typing import Any

from kyros.core.store import jobs as jobs_repo


async def test_leases_of_a_dead_local_daemon_are_voided_and_a_live_ones_kept(core: Any) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a pid that no longer runs, as after `kill -9` of a daemon
    host = socket.gethostname()
    dead_owner, live_owner = f"{host}:{gone.pid}:w_dead", f"{host}:1:w_live"
    async with core.store.write() as conn:
        for n in range(2):
            await jobs_repo.enqueue(conn, "sleep", {"seconds": 60, "n": n})
        # An hour-long lease each: only voiding re-queues them before the test ends.
        held = await jobs_repo.claim(conn, dead_owner, 1, 3600, postgres=core.store.is_postgres)
        kept = await jobs_repo.claim(conn, live_owner, 1, 3600, postgres=core.store.is_postgres)
    assert len(held) == len(kept) == 1

    voided = await core.pool.void_dead_local_leases()

    async def owner(job_id: int) -> str | None:
        async with core.store.read() as conn:
            job = await jobs_repo.get(conn, job_id)
        return None if job is None else job["lease_owner"]

    # The core's own reaper (every 0.2 s) re-queues a voided job; its pool may claim it again.
    deadline = asyncio.get_running_loop().time() + 5
    while await owner(held[0].id) == dead_owner and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.1)
    if core.store.is_postgres:
        # Another machine may share a PostgreSQL store and a host name: pids prove nothing.
        assert voided == 0 and await owner(held[0].id) == dead_owner
    else:
        assert voided == 1 and await owner(held[0].id) != dead_owner
    assert await owner(kept[0].id) == live_owner
