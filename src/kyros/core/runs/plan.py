"""The plan run: gather workspace context, ask the planner, validate, re-ask once, store.

Progress streams as events: ``run.started``, ``progress`` (phase), ``model.delta`` (coalesced
tokens), ``plan.invalid`` (the re-ask), then ``run.succeeded`` with the plan or ``run.failed``.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from kyros.core.ai.demo import DEMO_BANNER
from kyros.core.jobs.handlers import JobContext
from kyros.core.runs.executor import RunExecutor, window_of
from kyros.core.runs.plan_output import (
    PlanInvalid,
    parse_plan,
    plan_instructions,
    render_plan_markdown,
)
from kyros.core.store import threads as threads_repo
from kyros.core.workspace import gather_context, render_context

log = logging.getLogger("kyros.runs.plan")

#: Share of the model's context window given to workspace context; the rest is for the
#: instructions, the re-ask and the answer.
CONTEXT_SHARE = 0.5
MAX_CONTEXT_TOKENS = 60_000


class PlanExecutor(RunExecutor):
    """The handler of ``plan`` jobs."""

    async def execute(self, run: dict[str, Any], ctx: JobContext) -> Any:
        output = await self.make_plan(run, ctx)
        async with ctx.store.write() as conn:
            if run.get("thread_id"):
                # The conversation continues from the plan: implement and critic runs read it.
                thread = run["thread_id"]
                await threads_repo.append(conn, thread, "user", run["goal"], run_id=run["id"])
                await threads_repo.append(
                    conn, thread, "assistant", output["markdown"], run_id=run["id"]
                )
            events = await self.runs.end(conn, run, "succeeded", {"output": output}, output=output)
            await ctx.finish_in(conn, {"status": "succeeded"})
        self.runs.bus.publish(events)
        return {"status": "succeeded"}

    async def make_plan(self, run: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
        """Ask the planner for a plan of ``run``'s goal; validated, re-asked once. A continued
        conversation's earlier turns come before the request (compacted when long)."""
        run_id = run["id"]
        resolved = self.runs.resolve(run["model"], run["api_base"])
        backend = await asyncio.to_thread(self.backend)
        window = window_of(resolved, backend)
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
        earlier = await self.conversation(run, ctx, resolved, backend)
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": plan_instructions()},
            *earlier,
            {"role": "user", "content": f"## Goal\n{run['goal']}\n\n{render_context(context)}"},
        ]
        last_error = ""
        for attempt in (1, 2):
            await self.runs.emit(
                run_id, "progress", {"phase": "model", "model": resolved.name, "attempt": attempt}
            )
            completion = await self.call_model(run, resolved, backend, messages, attempt=attempt)
            try:
                plan = parse_plan(completion.text)
            except PlanInvalid as exc:
                last_error = exc.message
                await self.runs.emit(
                    run_id, "plan.invalid", {"error": last_error, "attempt": attempt}
                )
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
