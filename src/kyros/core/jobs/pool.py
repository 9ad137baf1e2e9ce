"""The worker pool: claims jobs, runs their handlers, renews leases, reaps the dead.

One dispatcher task settles finished attempts and claims new ones in a single transaction, so a
busy queue costs about one write transaction per batch rather than two per job. It wakes at once
when this process enqueues (``wake()``), and polls every ``poll_seconds`` for jobs other processes
add. A heartbeat task renews all leases this pool holds with one UPDATE; a reaper re-queues jobs
whose leases expired anywhere.

Crash attribution (ADR 0026): jobs whose worker died beside others come back as suspects. Every
``poll_seconds`` the dispatcher asks whether one is due; if so it stops claiming, lets what runs
finish, and runs the suspect alone, so a job that kills its process takes nothing else with it.

Shutdown (ADR 0027): running jobs get ``shutdown_grace_seconds`` to finish; handlers see
``ctx.stopping`` and stop at their next checkpoint; what is left is released, its attempt given
back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from kyros.core.bus import EventBus
from kyros.core.ids import new_id
from kyros.core.jobs.handlers import HandlerRegistry, JobContext, LeaseLost, Released
from kyros.core.store import events as events_repo
from kyros.core.store import jobs as jobs_repo
from kyros.core.store import nodes as nodes_repo
from kyros.core.store.bridge import Conn
from kyros.core.store.engine import Store
from kyros.core.store.jobs import ClaimedJob, Settlement
from kyros.core.store.schema import utcnow
from kyros.errors import StoreUnavailable

log = logging.getLogger("kyros.jobs")

#: How long the dispatcher lets finished attempts gather before it writes them (and claims).
BATCH_WINDOW_SECONDS = 0.001
#: Why a job went back to the queue at shutdown (its ``job.released`` event says so too).
SHUTDOWN_REASON = "the daemon stopped; the job resumes after the restart"


@dataclass(frozen=True)
class PoolConfig:
    workers: int = 4
    lease_seconds: float = 30.0
    heartbeat_seconds: float = 5.0
    reaper_seconds: float = 5.0
    poll_seconds: float = 1.0
    max_stalls: int = 3
    retry_base_seconds: float = 1.0
    retry_max_seconds: float = 300.0
    shutdown_grace_seconds: float = 10.0


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs here; a zombie (exited, not yet reaped) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return True


class WorkerPool:
    """Runs up to ``config.workers`` jobs at a time from the durable queue."""

    def __init__(
        self, store: Store, registry: HandlerRegistry, bus: EventBus, config: PoolConfig
    ) -> None:
        self.store = store
        self.registry = registry
        self.bus = bus
        self.config = config
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{new_id('w')}"
        self._wake = asyncio.Event()
        self._draining = asyncio.Event()
        # A suspect is due: claim nothing more until the pool is empty, then run it alone.
        self._isolating = False
        self._next_probe = 0.0  # monotonic time of the next "is a suspect due?" query
        self._running: dict[int, tuple[ClaimedJob, asyncio.Task[None]]] = {}
        self._cancel_asked: set[int] = set()
        self._settled: list[Settlement] = []
        self._give_ups: list[tuple[ClaimedJob, str, str]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self.last_error: str | None = None
        #: This node's registry id, written on the jobs and runs it claims (docs/cluster.md).
        self.node_id: str | None = None
        #: False while the node drains, and on a node that runs no jobs (``--role api``):
        #: nothing new is claimed; what runs finishes.
        self.claiming = True

    # --- lifecycle -------------------------------------------------------------------------

    async def void_dead_local_leases(self) -> int:
        """End the leases held by earlier daemons of this machine whose process is gone (a
        ``kill -9``), so their jobs are re-queued at the reaper's next pass instead of after
        the lease (30 s by default) runs out. Only for a store no other machine shares
        (SQLite): a pid says nothing about a process on another host of the same name."""
        if self.store.is_postgres:
            return 0
        host = socket.gethostname()
        dead = []
        async with self.store.read() as conn:
            owners = await jobs_repo.lease_owners(conn)
        for owner in owners:
            name, _, rest = owner.partition(":")
            pid = rest.partition(":")[0]
            if owner != self.owner and name == host and pid.isdigit() and not pid_alive(int(pid)):
                dead.append(owner)
        if not dead:
            return 0
        async with self.store.write() as conn:
            voided = await jobs_repo.void_leases(conn, dead)
        log.warning("%d job(s) held by a daemon that died are re-queued now", voided)
        return voided

    def start(self, *, run_jobs: bool = True) -> None:
        """Start the loops. Without ``run_jobs`` (an ``api`` node) only the reaper runs: it
        re-queues the jobs of workers that died, whichever node notices first."""
        self.claiming = self.claiming and run_jobs
        self._tasks = [asyncio.create_task(self._reaper_loop(), name="kyros-reaper")]
        if run_jobs:
            self._tasks += [
                asyncio.create_task(self._dispatch_loop(), name="kyros-dispatch"),
                asyncio.create_task(self._heartbeat_loop(), name="kyros-heartbeat"),
            ]

    @property
    def alive(self) -> bool:
        return bool(self._tasks) and not any(t.done() for t in self._tasks)

    @property
    def busy(self) -> int:
        return len(self._running)

    def wake(self) -> None:
        """Something was enqueued in this process: claim now instead of at the next poll."""
        self._wake.set()

    async def stop(self) -> None:
        """Stop claiming; let running jobs finish within the grace period; release the rest.

        Released jobs go back to the queue at once without counting a stall (RELIABILITY D5).
        """
        self._stopping = True
        self._draining.set()  # handlers stop at their next checkpoint
        self._wake.set()
        running = [task for _, task in self._running.values()]
        if running:
            await asyncio.wait(running, timeout=self.config.shutdown_grace_seconds)
        for job, task in list(self._running.values()):
            if not task.done():
                task.cancel()
                self._settled.append(Settlement(job=job, status="released", error=SHUTDOWN_REASON))
        with contextlib.suppress(Exception):
            await asyncio.gather(*(t for _, t in self._running.values()), return_exceptions=True)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(StoreUnavailable):
            await self._flush()

    # --- cancellation ---------------------------------------------------------------------

    def cancel_local(self, job_id: int) -> bool:
        """Cancel a job running in this pool at once; True if it was here."""
        entry = self._running.get(job_id)
        if entry is None:
            return False
        self._cancel_asked.add(job_id)
        entry[1].cancel()
        return True

    # --- loops --------------------------------------------------------------------------------

    async def _dispatch_loop(self) -> None:
        backoff = 0.05
        while not self._stopping:
            try:
                claimed, asked = await self._flush_and_claim()
                backoff = 0.05
                self.last_error = None
            except StoreUnavailable as exc:
                self.last_error = str(exc)
                log.warning("queue: store unavailable, retrying in %.1fs: %s", backoff, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            for job in claimed:
                task = asyncio.create_task(self._execute(job), name=f"kyros-job-{job.id}")
                self._running[job.id] = (job, task)
            free = self.config.workers - len(self._running)
            if claimed and len(claimed) == asked and free > 0:
                continue  # a full batch: the queue may hold more, claim again right away
            if self._settled:
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.config.poll_seconds)
            if self._running:
                # Attempts finishing in the same moment join one batch: without this window a
                # busy pool settles and claims one job per transaction.
                await asyncio.sleep(BATCH_WINDOW_SECONDS)

    async def _flush_and_claim(self, *, claim: bool = True) -> tuple[list[ClaimedJob], int]:
        """Write finished attempts and claim up to the free slots in one transaction; returns
        the claimed jobs and how many were asked for."""
        settled, self._settled = self._settled, []
        give_ups, self._give_ups = self._give_ups, []
        claim = claim and not self._stopping and self.claiming
        free = self.config.workers - len(self._running) if claim else 0
        published: list[dict[str, Any]] = []
        try:
            async with self.store.write() as conn:
                await jobs_repo.settle(conn, settled)
                published += await self._released_events(conn, settled)
                if self.registry.give_up is not None:
                    for job, status, reason in give_ups:
                        published += await self.registry.give_up(
                            conn, job.id, job.run_id, status, reason
                        )
                claimed = await self._claim(conn, free) if claim else []
                if claimed and self.node_id is not None:
                    await nodes_repo.note_claims(
                        conn, self.node_id, [j.run_id for j in claimed if j.run_id]
                    )
        except BaseException:
            # Nothing was written: keep the outcomes for the next try.
            self._settled[:0] = settled
            self._give_ups[:0] = give_ups
            raise
        self.bus.publish(published)
        return claimed, free

    async def _claim(self, conn: Conn, free: int) -> list[ClaimedJob]:
        """Ordinary jobs up to ``free``, or one suspect alone (ADR 0026)."""
        if any(job.isolated for job, _ in self._running.values()):
            return []  # a suspect runs alone: nothing joins it
        now = time.monotonic()
        if not self._isolating and now >= self._next_probe:
            self._next_probe = now + self.config.poll_seconds
            self._isolating = await jobs_repo.suspect_due(conn)
        if self._isolating:
            if self._running:
                return []  # let what runs finish first
            self._isolating = False
            self._next_probe = 0.0  # after this one, look for the next suspect at once
            suspect = await jobs_repo.claim_suspect(
                conn,
                self.owner,
                self.config.lease_seconds,
                postgres=self.store.is_postgres,
                node=self.node_id,
            )
            if suspect is not None:
                log.warning(
                    "job %s: retrying alone (attempt %s; its worker died while it ran)",
                    suspect.id,
                    suspect.attempts,
                )
            return [suspect] if suspect is not None else []
        return await jobs_repo.claim(
            conn,
            self.owner,
            free,
            self.config.lease_seconds,
            postgres=self.store.is_postgres,
            node=self.node_id,
        )

    @staticmethod
    async def _released_events(conn: Conn, settled: list[Settlement]) -> list[dict[str, Any]]:
        """A ``job.released`` event on each run whose job went back to the queue at shutdown."""
        return [
            await events_repo.append(
                conn,
                s.job.run_id,
                "job.released",
                {"job_id": s.job.id, "attempt": s.job.attempts, "reason": s.error},
            )
            for s in settled
            if s.status == "released" and s.job.run_id and s.error == SHUTDOWN_REASON
        ]

    async def _flush(self) -> None:
        if self._settled or self._give_ups:
            await self._flush_and_claim(claim=False)

    async def _execute(self, job: ClaimedJob) -> None:
        ctx = JobContext(job=job, store=self.store, bus=self.bus, draining=self._draining)
        settlement: Settlement | None = None
        try:
            handler = self.registry.handlers.get(job.kind)
            if handler is None:
                settlement = Settlement(
                    job=job, status="failed", error=f"unknown job kind {job.kind!r}"
                )
                self._give_ups.append((job, "failed", settlement.error or ""))
                return
            result = await handler(ctx)
            if not ctx.finished:
                settlement = Settlement(job=job, status="succeeded", result=result)
        except asyncio.CancelledError:
            if job.id in self._cancel_asked:
                settlement = Settlement(job=job, status="cancelled", error="cancelled")
                self._give_ups.append((job, "cancelled", "cancelled by request"))
            elif not self._stopping:
                settlement = Settlement(job=job, status="released", error="lease lost")
            # On shutdown, stop() records the release itself.
        except Released:
            if not ctx.finished:
                settlement = Settlement(job=job, status="released", error=SHUTDOWN_REASON)
        except LeaseLost as exc:
            log.warning("%s", exc)  # another attempt owns it now; write nothing
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            if job.attempts < job.max_attempts:
                delay = jobs_repo.backoff(
                    job.attempts, self.config.retry_base_seconds, self.config.retry_max_seconds
                )
                log.warning(
                    "job %s attempt %s failed, retry in %.1fs: %s",
                    job.id,
                    job.attempts,
                    delay,
                    reason,
                )
                settlement = Settlement(
                    job=job,
                    status="retry",
                    error=reason,
                    retry_at=utcnow() + timedelta(seconds=delay),
                )
            else:
                log.error("job %s failed after %s attempts: %s", job.id, job.attempts, reason)
                settlement = Settlement(job=job, status="failed", error=reason)
                self._give_ups.append((job, "failed", reason))
        finally:
            self._running.pop(job.id, None)
            self._cancel_asked.discard(job.id)
            if settlement is not None:
                self._settled.append(settlement)
            self._wake.set()

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.heartbeat_seconds)
            if not self._running:
                continue
            # Judge only attempts whose claim committed before this heartbeat began: on
            # PostgreSQL the UPDATE's snapshot cannot see a claim that commits during it, and
            # reading that as "lease lost" would cancel a healthy attempt.
            known = dict(self._running)
            try:
                async with self.store.write() as conn:
                    held = await jobs_repo.heartbeat(conn, self.owner, self.config.lease_seconds)
            except StoreUnavailable as exc:
                log.warning("heartbeat failed: %s", exc)
                continue
            for job_id, (job, task) in known.items():
                if task.done():
                    continue
                token, cancel = held.get(job_id, (None, False))
                if token != job.fencing_token:
                    log.warning("job %s: lease lost to another attempt; stopping this one", job_id)
                    task.cancel()
                elif cancel:
                    self.cancel_local(job_id)

    async def _reaper_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.reaper_seconds)
            try:
                published: list[dict[str, Any]] = []
                async with self.store.write() as conn:
                    reaped = await jobs_repo.reap(
                        conn,
                        max_stalls=self.config.max_stalls,
                        retry_base=self.config.retry_base_seconds,
                        retry_max=self.config.retry_max_seconds,
                        postgres=self.store.is_postgres,
                    )
                    for r in reaped:
                        if r.dead and self.registry.give_up is not None:
                            published += await self.registry.give_up(
                                conn, r.job_id, r.run_id, "failed", r.reason
                            )
                        elif not r.dead and self.registry.lost is not None:
                            published += await self.registry.lost(conn, r)
                self.bus.publish(published)
                for r in reaped:
                    log.warning(
                        "reaper: job %s attempt %s %s: %s",
                        r.job_id,
                        r.attempt,
                        r.outcome,
                        r.reason,
                    )
                if any(not r.dead for r in reaped):
                    self.wake()
            except StoreUnavailable as exc:
                log.warning("reaper: store unavailable: %s", exc)
