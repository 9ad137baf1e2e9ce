"""The plan run: gather workspace context, ask the planner, validate, re-ask once, store.

Progress streams as events: ``run.started``, ``progress`` (phase), ``model.delta`` (coalesced
tokens), ``plan.invalid`` (the re-ask), then ``run.succeeded`` with the plan or ``run.failed``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kyros.core.ai.backend import ChatRequest, Completion, LLMBackend, ProviderError
from kyros.core.ai.demo import DEMO_BANNER
from kyros.core.jobs.handlers import JobContext
from kyros.core.runs.plan_output import (
    PlanInvalid,
    parse_plan,
    plan_instructions,
    render_plan_markdown,
)
from kyros.core.runs.service import RunService
from kyros.core.store import runs as runs_repo
from kyros.core.store import usage as usage_repo
from kyros.core.workspace import gather_context, render_context
from kyros.errors import KyrosError
from kyros.protocol import TERMINAL_STATUSES

log = logging.getLogger("kyros.runs.plan")

#: Share of the model's context window given to workspace context; the rest is for the
#: instructions, the re-ask and the answer.
CONTEXT_SHARE = 0.5
MAX_CONTEXT_TOKENS = 60_000
#: Model tokens are written as one event per this many seconds or characters, whichever first.
DELTA_FLUSH_SECONDS = 0.1
DELTA_FLUSH_CHARS = 2048


class _DeltaWriter:
    """Coalesces streamed tokens into ``model.delta`` events (one DB write per ~100 ms)."""

    def __init__(self, runs: RunService, run_id: str, attempt: int) -> None:
        self.runs, self.run_id, self.attempt = runs, run_id, attempt
        self.buffer: list[str] = []
        self.size = 0
        self.last = time.monotonic()

    async def __call__(self, delta: str) -> None:
        self.buffer.append(delta)
        self.size += len(delta)
        if self.size >= DELTA_FLUSH_CHARS or time.monotonic() - self.last >= DELTA_FLUSH_SECONDS:
            await self.flush()

    async def flush(self) -> None:
        if self.buffer:
            text, self.buffer, self.size = "".join(self.buffer), [], 0
            await self.runs.emit(self.run_id, "model.delta", {"text": text, "try": self.attempt})
        self.last = time.monotonic()


class PlanExecutor:
    """The handler of ``plan`` jobs."""

    def __init__(self, runs: RunService, backend: Callable[[], LLMBackend]) -> None:
        self.runs = runs
        self.backend = backend

    async def __call__(self, ctx: JobContext) -> Any:
        run_id = str(ctx.job.payload["run_id"])
        run = await self.runs.get(run_id)
        if run["status"] in TERMINAL_STATUSES:
            return {"skipped": f"run already {run['status']}"}  # at-least-once: redelivery
        async with ctx.store.write() as conn:
            started = await self.runs.transition(
                conn, run_id, "running", "run.started", {"attempt": ctx.job.attempts}
            )
        self.runs.bus.publish([started])
        try:
            output = await self._plan(run, ctx)
        except KyrosError as exc:
            await self._finish(
                ctx,
                run_id,
                "failed",
                "run.failed",
                {"reason": exc.message, "code": exc.code},
                error=exc.message,
            )
            return {"status": "failed"}
        await self._finish(
            ctx, run_id, "succeeded", "run.succeeded", {"output": output}, output=output
        )
        return {"status": "succeeded"}

    async def _finish(
        self,
        ctx: JobContext,
        run_id: str,
        status: str,
        event: str,
        data: dict[str, Any],
        **fields: Any,
    ) -> None:
        async with ctx.store.write() as conn:
            final = await self.runs.transition(conn, run_id, status, event, data, **fields)
            await ctx.finish_in(conn, {"status": status})
        self.runs.bus.publish([final])

    async def _plan(self, run: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
        run_id = run["id"]
        resolved = self.runs.resolve(run["model"], run["api_base"])
        backend = await asyncio.to_thread(self.backend)
        window = backend.context_window(resolved.litellm_model) if not resolved.is_demo else 32_000
        budget = int(min(window * CONTEXT_SHARE, MAX_CONTEXT_TOKENS))
        await self.runs.emit(run_id, "progress", {"phase": "context", "budget_tokens": budget})
        context = await asyncio.to_thread(
            gather_context, Path(run["workspace"]), run["goal"], budget
        )
        await self.runs.emit(
            run_id,
            "progress",
            {
                "phase": "context.done",
                "files": len(context.files),
                "tokens": context.tokens,
                "git": context.is_git,
            },
        )
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": plan_instructions()},
            {"role": "user", "content": f"## Goal\n{run['goal']}\n\n{render_context(context)}"},
        ]
        last_error = ""
        for attempt in (1, 2):
            await self.runs.emit(
                run_id, "progress", {"phase": "model", "model": resolved.name, "try": attempt}
            )
            writer = _DeltaWriter(self.runs, run_id, attempt)
            request = ChatRequest(
                model=resolved.litellm_model,
                messages=messages,
                api_base=resolved.api_base,
                api_key=resolved.api_key,
            )
            try:
                completion = await backend.complete(request, writer)
            except ProviderError as exc:
                await writer.flush()
                await self._record_usage(run, resolved.name, None, exc.kind)
                raise
            await writer.flush()
            await self._record_usage(run, resolved.name, completion, "ok")
            try:
                plan = parse_plan(completion.text)
            except PlanInvalid as exc:
                last_error = exc.message
                await self.runs.emit(run_id, "plan.invalid", {"error": last_error, "try": attempt})
                messages += [
                    {"role": "assistant", "content": completion.text},
                    {
                        "role": "user",
                        "content": f"Your answer was not a valid plan: {last_error}\n"
                        "Answer again with one JSON object only, in the shape given.",
                    },
                ]
                continue
            note = DEMO_BANNER if resolved.is_demo else None
            markdown = render_plan_markdown(plan)
            if note:
                markdown = f"> {note}\n\n{markdown}"
            return {"plan": plan.model_dump(), "markdown": markdown, "note": note}
        raise PlanInvalid(f"the model's plan was invalid twice; last problem: {last_error}")

    async def _record_usage(
        self, run: dict[str, Any], model: str, completion: Completion | None, outcome: str
    ) -> None:
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
