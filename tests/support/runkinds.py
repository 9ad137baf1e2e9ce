"""A run kind a plugin adds, loaded into a real daemon with ``KYROS_PLUGINS``.

``summarize`` asks the run's model to summarize the goal, through the same
:meth:`RunExecutor.call_model` as the built-in kinds (routing, budgets, ledger, streamed
events). A goal that contains ``[ask]`` first waits for a human's approval, as an implement run
waits on a tool call; a denial ends the run without a model call.
"""

from __future__ import annotations

import asyncio
from typing import Any

from kyros.core.jobs.handlers import HandlerRegistry, JobContext
from kyros.core.runs.executor import RunExecutor

APPROVAL_ID = "publish"


class Summarize(RunExecutor):
    async def execute(self, run: dict[str, Any], ctx: JobContext) -> Any:
        if "[ask]" in run["goal"]:
            decision = ((run.get("params") or {}).get("decisions") or {}).get(APPROVAL_ID)
            if decision is None:
                pending = {
                    "id": APPROVAL_ID,
                    "kind": "plugin",
                    "tool": "publish_summary",
                    "reason": "a summary is about to be published",
                }
                async with ctx.store.write() as conn:
                    await ctx.fence(conn)
                    events = await self.runs.pause(conn, run, pending)
                    await ctx.finish_in(conn, {"status": "needs_approval"})
                self.runs.bus.publish(events)
                return {"status": "needs_approval"}
            if not decision["approve"]:
                await self.finish(ctx, run, "cancelled", {"reason": "denied"})
                return {"status": "cancelled"}
        backend = await asyncio.to_thread(self.backend)  # may import litellm (~3 s)
        messages = [
            {"role": "system", "content": "Summarize the user's text in one sentence."},
            {"role": "user", "content": run["goal"]},
        ]
        resolved = self.runs.resolve(run["model"], run["api_base"])
        completion = await self.call_model(run, resolved, backend, messages)
        output = {"summary": completion.text}
        await self.finish(ctx, run, "succeeded", {"output": output}, output=output)
        return {"status": "succeeded"}


def register(registry: HandlerRegistry) -> None:
    registry.register_run("summarize", Summarize)
