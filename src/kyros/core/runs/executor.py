"""What every run's job handler shares: start, finish atomically with the job, record usage.

A handler may be delivered more than once (the queue is at-least-once), so :meth:`__call__`
skips runs that already ended, and every final write commits together with the job's settlement
under the attempt's fencing token.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from kyros.core.ai.backend import Completion, LLMBackend
from kyros.core.ai.budget import BudgetExhausted
from kyros.core.ai.catalogue import ROLE_OF_KIND
from kyros.core.ai.models import ResolvedModel
from kyros.core.jobs.handlers import JobContext
from kyros.core.runs.lost_calls import record_lost_calls
from kyros.core.runs.service import RunService
from kyros.core.runs.spending import RunSpender, caps_for
from kyros.core.runs.streaming import DeltaWriter
from kyros.core.store import agents as agents_repo
from kyros.errors import KyrosError
from kyros.statuses import TERMINAL_STATUSES

log = logging.getLogger("kyros.runs")


class RunExecutor:
    """Base of the ``plan``/``implement``/``critic``/``pipeline`` handlers."""

    def __init__(self, runs: RunService, backend: Callable[[], LLMBackend]) -> None:
        self.runs = runs
        self.backend = backend

    async def __call__(self, ctx: JobContext) -> Any:
        run_id = str(ctx.job.payload["run_id"])
        run = await self.runs.get(run_id)
        if run["status"] in TERMINAL_STATUSES or run["status"] == "needs_approval":
            return {"skipped": f"run is {run['status']}"}  # at-least-once: a redelivery
        if run["status"] == "running":
            await self._record_lost_calls(run, ctx)  # delivered again: the attempt before died
        else:
            async with ctx.store.write() as conn:
                started = await self.runs.transition(
                    conn, run_id, "running", "run.started", {"attempt": ctx.job.attempts}
                )
            self.runs.bus.publish([started])
            run["status"] = "running"
        try:
            return await self.execute(run, ctx)
        except BudgetExhausted as exc:
            await self.finish(
                ctx,
                run,
                "budget_exhausted",
                {"reason": exc.message, "code": exc.code, **(exc.detail or {})},
                error=exc.message,
            )
            return {"status": "budget_exhausted"}
        except KyrosError as exc:
            await self.finish(
                ctx,
                run,
                "failed",
                {"reason": exc.message, "code": exc.code},
                error=exc.message,
            )
            return {"status": "failed"}

    async def _record_lost_calls(self, run: dict[str, Any], ctx: JobContext) -> None:
        def provider_of(model: str) -> str | None:
            try:
                return self.runs.catalogue.resolve(model).provider
            except KyrosError:
                return None

        async with ctx.store.write() as conn:
            await ctx.fence(conn)
            lost = await record_lost_calls(conn, run, ROLE_OF_KIND.get(run["kind"]), provider_of)
        if lost:
            log.warning(
                "run %s: %d model call(s) lost with the daemon, now in the ledger", run["id"], lost
            )

    async def execute(self, run: dict[str, Any], ctx: JobContext) -> Any:
        """Do the run's work and end it with :meth:`finish` (or :meth:`pause`)."""
        raise NotImplementedError

    async def finish(
        self,
        ctx: JobContext,
        run: dict[str, Any],
        status: str,
        data: dict[str, Any],
        **fields: Any,
    ) -> None:
        """End the run in ``status`` and settle the job, in one fenced transaction."""
        async with ctx.store.write() as conn:
            events = await self.runs.end(conn, run, status, data, **fields)
            await ctx.finish_in(conn, {"status": status})
        self.runs.bus.publish(events)

    async def call_model(
        self,
        run: dict[str, Any],
        resolved: ResolvedModel,
        backend: LLMBackend,
        messages: list[dict[str, Any]],
        *,
        tools: list[dict[str, Any]] | None = None,
        stream: bool = True,
        role: str | None = None,
        **tags: object,
    ) -> Completion:
        """One model call of ``run``, routed over ``resolved`` and its role's fallbacks: tokens
        stream as ``model.delta`` events tagged with ``tags``; every attempt is a ledger row;
        retries and fallbacks are events. Raises ``BudgetExhausted`` before a call past a cap."""
        role = role or ROLE_OF_KIND.get(run["kind"])
        writer = DeltaWriter(self.runs, run["id"], **tags) if stream else None

        async def on_event(kind: str, data: dict[str, Any]) -> None:
            if writer is not None:
                await writer.flush()  # a discarded attempt's text goes out before its notice
            await self.runs.emit(run["id"], kind, {**data, **tags})

        spender = RunSpender(
            self.runs.store,
            run,
            caps_for(run, self.runs.catalogue.settings, await self._agent_limits(run)),
            role,
            self.runs.redactor,
            self.runs.book,
        )
        try:
            return await self.runs.router.complete(
                self.runs.catalogue.chain(role, resolved),
                messages,
                backend,
                spender,
                tools=tools,
                on_delta=writer,
                on_event=on_event,
            )
        finally:
            if writer is not None:
                await writer.flush()

    async def _agent_limits(self, run: dict[str, Any]) -> dict[str, Any]:
        if not run.get("agent"):
            return {}
        async with self.runs.store.read() as conn:
            row = await agents_repo.get(conn, run["agent"])
        return dict((row or {}).get("limits") or {})
