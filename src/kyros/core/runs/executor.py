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
from kyros.core.ai.choice import server_of
from kyros.core.ai.models import ResolvedModel
from kyros.core.jobs.handlers import JobContext
from kyros.core.runs import memory
from kyros.core.runs.lost_calls import record_lost_calls
from kyros.core.runs.service import RunService
from kyros.core.runs.spending import RunSpender, caps_for
from kyros.core.runs.streaming import DeltaWriter
from kyros.core.store import agents as agents_repo
from kyros.core.store import events as events_repo
from kyros.core.store import threads as threads_repo
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
        if run["status"] != "running":
            async with ctx.store.write() as conn:
                started = await self.runs.transition(
                    conn, run_id, "running", "run.started", {"attempt": ctx.job.attempts}
                )
            self.runs.bus.publish([started])
            run["status"] = "running"
        else:
            await self._record_lost_calls(run, ctx)  # delivered again: the attempt before died
            if ctx.job.attempts > 1:
                # The same job again: an earlier attempt was lost (reaped) or released (the
                # daemon stopped). The run goes on from what its events and outputs hold.
                await self.runs.emit(
                    run_id, "run.retried", {"attempt": ctx.job.attempts, "job_id": ctx.job.id}
                )
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
            data: dict[str, Any] = {"reason": exc.message, "code": exc.code}
            if isinstance(exc.detail, dict) and "attempts" in exc.detail:
                data["attempts"] = exc.detail["attempts"]  # what a model call tried, in order
            await self.finish(ctx, run, "failed", data, error=exc.message)
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
        chain = self.runs.catalogue.chain(role, resolved)
        servers = {c.name: server_of(c) for c in chain}

        async def on_event(kind: str, data: dict[str, Any]) -> None:
            if writer is not None:
                await writer.flush()  # a discarded attempt's text goes out before its notice
            if kind == "model.fallback":
                # The fallback is called at its own server, chosen by the role's chain.
                data = {
                    **data,
                    "server": servers.get(str(data.get("to"))),
                    "why": f"fallback:{role}",
                }
            await self.runs.emit(run["id"], kind, {**data, **tags})

        await self.runs.emit(run["id"], "model.call", {**call_record(run, resolved, role), **tags})

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
                chain,
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

    async def history(self, run: dict[str, Any]) -> list[dict[str, Any]]:
        """Every message of the run's thread (its conversation), oldest first."""
        if not run.get("thread_id"):
            return []
        async with self.runs.store.read() as conn:
            return await threads_repo.history(conn, run["thread_id"])

    async def compacted(
        self,
        run: dict[str, Any],
        ctx: JobContext,
        history: list[dict[str, Any]],
        resolved: ResolvedModel,
        backend: LLMBackend,
    ) -> list[dict[str, Any]]:
        """``history``, or — when its chat would take more than ``memory.COMPACT_AT`` of the
        model's context window — the history after a ``summary`` message was added for its
        older part (the originals stay: a summary never replaces a row)."""
        window = int(
            (run.get("params") or {}).get("context_window") or window_of(resolved, backend)
        )
        chat = memory.to_chat(history, run["id"])
        if memory.estimate_tokens(chat) <= window * memory.COMPACT_AT:
            return history
        upto = memory.compaction_cut(history, int(window * memory.KEEP_SHARE))
        if upto is None:
            return history
        completion = await self.call_model(
            run,
            resolved,
            backend,
            memory.summary_request(history, upto),
            stream=False,
            role="summarize",
        )
        async with self.runs.store.write() as conn:
            await ctx.fence(conn)
            await threads_repo.append(
                conn,
                run["thread_id"],
                "summary",
                completion.text,
                run_id=run["id"],
                meta={"upto": upto},
            )
            event = await events_repo.append(conn, run["id"], "memory.compacted", {"upto": upto})
        self.runs.bus.publish([event])
        return await self.history(run)

    async def conversation(
        self, run: dict[str, Any], ctx: JobContext, resolved: ResolvedModel, backend: LLMBackend
    ) -> list[dict[str, Any]]:
        """The earlier turns of the run's thread as chat messages (compacted when long): what a
        ``--continue``d run sends before its own request. Empty for a new conversation."""
        earlier = _earlier(await self.history(run), run["id"])
        if not earlier:
            return []
        history = await self.compacted(run, ctx, earlier, resolved, backend)
        return memory.to_chat(_earlier(history, run["id"]), run["id"])

    async def _agent_limits(self, run: dict[str, Any]) -> dict[str, Any]:
        if not run.get("agent"):
            return {}
        async with self.runs.store.read() as conn:
            row = await agents_repo.get(conn, run["agent"])
        return dict((row or {}).get("limits") or {})


def window_of(resolved: ResolvedModel, backend: LLMBackend) -> int:
    """Input tokens ``resolved`` accepts: its catalogue entry's, else the price list's."""
    if resolved.is_demo:
        return 32_000
    return resolved.context_window or backend.context_window(resolved.litellm_model)


def _earlier(history: list[dict[str, Any]], run_id: str) -> list[dict[str, Any]]:
    """The thread before ``run_id``'s own turns (its summaries of them included)."""
    return [m for m in history if m.get("run_id") != run_id or m["role"] == "summary"]


def call_record(run: dict[str, Any], resolved: ResolvedModel, role: str | None) -> dict[str, Any]:
    """What a ``model.call`` event says: the model, its server and why it was chosen."""
    choice = (run.get("params") or {}).get("model_choice") or {}
    reason = choice.get("reason") or "run"
    data: dict[str, Any] = {
        "model": resolved.name,
        "server": server_of(resolved),
        "reason": reason,
        "role": role,
    }
    if choice.get("replaced") is not None:
        data["replaced"] = choice["replaced"]
    return data
