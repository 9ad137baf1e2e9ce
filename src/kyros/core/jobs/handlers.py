"""What a job kind does: handlers, their context, and the registry plugins add to."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from kyros.core.bus import EventBus
from kyros.core.store import jobs as jobs_repo
from kyros.core.store.bridge import Conn
from kyros.core.store.engine import Store
from kyros.core.store.jobs import ClaimedJob

#: A run kind is a path segment of the API and a CLI word.
_RUN_KIND = re.compile(r"[a-z][a-z0-9-]{0,39}")


class LeaseLost(Exception):
    """This attempt no longer owns its job (its lease expired and another attempt took it)."""


class Released(Exception):
    """The daemon is stopping and this attempt stopped at a checkpoint: its job goes back to
    the queue at once, without spending an attempt or counting a stall (RELIABILITY D5)."""


@dataclass
class JobContext:
    """Handed to a handler: the attempt it runs, and the store to write through."""

    job: ClaimedJob
    store: Store
    bus: EventBus | None = None
    finished: bool = False
    result: Any = None
    #: Set when the daemon starts to stop: handlers stop at their next checkpoint.
    draining: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def stopping(self) -> bool:
        """Whether the daemon is stopping (the grace period runs)."""
        return self.draining.is_set()

    def checkpoint(self) -> None:
        """Raise :class:`Released` if the daemon is stopping.

        Call it where the handler's durable state is complete (between model turns, before a
        tool call): the next attempt resumes from there instead of starting work that the
        shutdown would cut off.
        """
        if self.draining.is_set():
            raise Released(f"job {self.job.id}: the daemon is stopping")

    def publish(self, events: list[dict[str, Any]]) -> None:
        """Hand committed events to live subscribers."""
        if self.bus is not None:
            self.bus.publish(events)

    async def fence(self, conn: Conn) -> None:
        """Raise :class:`LeaseLost` (rolling back ``conn``'s transaction) unless this attempt
        still owns its job: the guard of every write a handler makes on its way."""
        if not await jobs_repo.fenced(conn, self.job.id, self.job.fencing_token):
            raise LeaseLost(f"job {self.job.id} attempt {self.job.fencing_token} lost its lease")

    async def finish_in(self, conn: Conn, result: Any = None) -> None:
        """Settle this job as succeeded inside the handler's own final transaction.

        Use it when the handler's last writes must commit atomically with the job's completion;
        raises :class:`LeaseLost` (rolling back the caller's transaction) if the attempt was
        fenced off meanwhile.
        """
        if not await jobs_repo.fenced(conn, self.job.id, self.job.fencing_token):
            raise LeaseLost(f"job {self.job.id} attempt {self.job.fencing_token} lost its lease")
        await jobs_repo.settle(
            conn, [jobs_repo.Settlement(job=self.job, status="succeeded", result=result)]
        )
        self.finished, self.result = True, result


Handler = Callable[[JobContext], Awaitable[Any]]
#: Called in the transaction that gives up on a job (failed, dead-lettered or cancelled).
GiveUp = Callable[[Conn, int, str | None, str, str], Awaitable[list[dict[str, Any]]]]
#: Called in the transaction that re-queues a job whose attempt was lost (its worker died):
#: the run's record of it, from the reaper's account (a ``kyros.core.store.jobs.Reaped``).
Lost = Callable[[Conn, Any], Awaitable[list[dict[str, Any]]]]


#: Builds a run kind's handler from the run service and the AI backend getter (a
#: :class:`kyros.core.runs.executor.RunExecutor` subclass is one: ``Kind(runs, backend)``).
RunHandlerFactory = Callable[[Any, Callable[[], Any]], Handler]


@dataclass
class HandlerRegistry:
    """Job kinds and their handlers. Built-ins register the same way plugins do.

    A plugin's ``register(registry)`` adds job kinds with :meth:`register`, and run kinds —
    which the API and ``kyros run custom KIND`` start like ``plan`` — with :meth:`register_run`.
    """

    handlers: dict[str, Handler] = field(default_factory=dict)
    give_up: GiveUp | None = None
    lost: Lost | None = None
    #: Run kinds added by plugins, waiting for the core to build their handlers.
    run_kinds: dict[str, RunHandlerFactory] = field(default_factory=dict)

    def register(self, kind: str, handler: Handler) -> None:
        if kind in self.handlers:
            raise ValueError(f"job kind {kind!r} is already registered")
        self.handlers[kind] = handler

    def register_run(self, kind: str, factory: RunHandlerFactory) -> None:
        """Add a run kind: runs of ``kind`` are created by the API and run by the handler
        ``factory(runs, backend)`` builds, with the events, approvals, budgets and errors of
        every run (subclass ``RunExecutor`` and implement ``execute``)."""
        if kind in self.handlers or kind in self.run_kinds:
            raise ValueError(f"job kind {kind!r} is already registered")
        if not _RUN_KIND.fullmatch(kind):
            raise ValueError(f"run kind {kind!r}: lower-case letters, digits and '-' only")
        self.run_kinds[kind] = factory


async def _noop(ctx: JobContext) -> None:
    return None


async def _sleep(ctx: JobContext) -> dict[str, float]:
    seconds = float(ctx.job.payload.get("seconds", 0.1))
    await asyncio.sleep(seconds)
    return {"slept": seconds}


def register_builtin(registry: HandlerRegistry) -> None:
    """``noop`` and ``sleep``: diagnostics and benchmarks of the queue itself."""
    registry.register("noop", _noop)
    registry.register("sleep", _sleep)
