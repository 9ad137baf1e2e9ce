"""Job kinds the durability tests load into a real daemon with ``KYROS_PLUGINS``.

``ledger`` writes each attempt's start and end to a file outside the store (the external
ledger of RELIABILITY D1); ``chatter`` appends many events to a run (D7); ``poison`` kills its
own daemon with SIGKILL on every attempt, after noting the attempt in its ledger (D3).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

from kyros.core.jobs.handlers import HandlerRegistry, JobContext
from kyros.core.store import events as events_repo
from kyros.core.store import runs as runs_repo


def _append(path: str, line: str) -> None:
    # O_APPEND single writes: lines from concurrent attempts never interleave, and a line
    # written before a SIGKILL is in the page cache, so it survives the kill.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


async def ledger(ctx: JobContext) -> dict[str, Any]:
    p = ctx.job.payload
    stamp = f"{ctx.job.id} {ctx.job.fencing_token} {os.getpid()}"
    _append(p["ledger"], f"start {stamp} {time.time():.6f}")
    try:
        await asyncio.sleep(float(p.get("seconds", 0.2)))
    finally:
        # Also when cancelled: the attempt stops here, and the ledger must say so.
        _append(p["ledger"], f"end {stamp} {time.time():.6f}")
    return {"ok": True}


async def chatter(ctx: JobContext) -> dict[str, Any]:
    p = ctx.job.payload
    run_id, total, batch = p["run_id"], int(p["events"]), int(p.get("batch", 50))
    sent = 0
    while sent < total:
        n = min(batch, total - sent)
        async with ctx.store.write() as conn:
            published = [
                await events_repo.append(conn, run_id, "chatter", {"i": sent + i}) for i in range(n)
            ]
        sent += n
        ctx.publish(published)
        await asyncio.sleep(float(p.get("pause", 0.001)))
    async with ctx.store.write() as conn:
        await runs_repo.set_fields(conn, run_id, status="succeeded")
        final = await events_repo.append(conn, run_id, "run.succeeded", {"status": "succeeded"})
        await ctx.finish_in(conn, {"events": total})
    ctx.publish([final])
    return {"events": total}


async def poison(ctx: JobContext) -> None:
    p = ctx.job.payload
    stamp = f"{ctx.job.id} {ctx.job.fencing_token} {os.getpid()}"
    _append(p["ledger"], f"start {stamp} {time.time():.6f} isolated={ctx.job.isolated}")
    await asyncio.sleep(float(p.get("delay", 0.2)))
    os.kill(os.getpid(), signal.SIGKILL)


def register(registry: HandlerRegistry) -> None:
    registry.register("ledger", ledger)
    registry.register("chatter", chatter)
    registry.register("poison", poison)
