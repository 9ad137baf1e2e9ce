"""What every run's job handler shares: start, finish atomically with the job, record usage.

A handler may be delivered more than once (the queue is at-least-once), so :meth:`__call__`
skips runs that already ended, and every final write commits together with the job's settlement
under the attempt's fencing token.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from kyros.core.ai.backend import ChatRequest, Completion, LLMBackend, ProviderError
from kyros.core.ai.models import ResolvedModel
from kyros.core.jobs.handlers import JobContext
from kyros.core.runs.service import RunService
from kyros.core.runs.streaming import DeltaWriter
from kyros.core.store import runs as runs_repo
from kyros.core.store import usage as usage_repo
from kyros.errors import KyrosError
from kyros.protocol import TERMINAL_STATUSES

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
        if run["status"] != "running":
            async with ctx.store.write() as conn:
                started = await self.runs.transition(
                    conn, run_id, "running", "run.started", {"attempt": ctx.job.attempts}
                )
            self.runs.bus.publish([started])
            run["status"] = "running"
        try:
            return await self.execute(run, ctx)
        except KyrosError as exc:
            await self.finish(
                ctx,
                run,
                "failed",
                {"reason": exc.message, "code": exc.code},
                error=exc.message,
            )
            return {"status": "failed"}

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
        **tags: object,
    ) -> Completion:
        """One model call of ``run``: tokens stream as ``model.delta`` events tagged with
        ``tags``; the call (or its failure) is one ledger row."""
        writer = DeltaWriter(self.runs, run["id"], **tags) if stream else None
        request = ChatRequest(
            model=resolved.litellm_model,
            messages=messages,
            api_base=resolved.api_base,
            api_key=resolved.api_key,
            tools=tools,
        )
        try:
            completion = await backend.complete(request, writer)
        except ProviderError as exc:
            if writer is not None:
                await writer.flush()
            await self.record_usage(run, resolved.name, None, exc.kind)
            raise
        if writer is not None:
            await writer.flush()
        await self.record_usage(run, resolved.name, completion, "ok")
        return completion

    async def record_usage(
        self, run: dict[str, Any], model: str, completion: Completion | None, outcome: str
    ) -> None:
        """One ledger row per model call, and the run's running totals."""
        c = completion
        async with self.runs.store.write() as conn:
            await usage_repo.record(
                conn,
                run_id=run["id"],
                agent=run.get("agent"),
                project=run["workspace"],
                model=model,
                provider=None,
                tokens_in=c.tokens_in if c else 0,
                tokens_out=c.tokens_out if c else 0,
                cached_tokens=c.cached_tokens if c else 0,
                cost=c.cost if c else 0.0,
                latency_ms=c.latency_ms if c else None,
                outcome=outcome,
            )
            if c:
                await runs_repo.add_usage_totals(conn, run["id"], c.tokens_in, c.tokens_out, c.cost)
