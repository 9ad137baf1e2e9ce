"""The pipeline run: plan → implement → critic gate → escalation, as child runs of one run.

A pipeline job never waits for a stage: it looks at its children, starts the next stage (or
ends), and lets its job go. A stage that ends queues the pipeline's next job in its own final
transaction, so the pipeline advances exactly when a stage ends — across restarts too — and
holds no worker while a model works.
"""

from __future__ import annotations

from typing import Any

from kyros.core.ai.demo import DEMO_BANNER, DEMO_MODEL
from kyros.core.jobs.handlers import JobContext
from kyros.core.runs.executor import RunExecutor
from kyros.core.store import events as events_repo
from kyros.core.store import quality as quality_repo
from kyros.core.store.bridge import Conn
from kyros.statuses import TERMINAL_STATUSES

STAGES = ("plan", "implement", "critic")


class PipelineExecutor(RunExecutor):
    """The handler of ``pipeline`` jobs: one step of the pipeline's state machine."""

    def __init__(self, runs: Any, backend: Any, *, agents: Any) -> None:
        super().__init__(runs, backend)
        self.agents = agents

    async def execute(self, run: dict[str, Any], ctx: JobContext) -> Any:
        review = await self.runs.review(run["id"])
        kids: list[dict[str, Any]] = review["children"]
        if any(k["status"] not in TERMINAL_STATUSES for k in kids):
            await self._release(ctx)  # a stage is at work; its end queues the next step
            return {"status": "waiting"}
        params = run.get("params") or {}
        until = params.get("until") or "critic"
        last = kids[-1] if kids else None
        if last is None:
            if params.get("plan_run"):
                return await self._start(ctx, run, "implement", {"plan_run": params["plan_run"]})
            return await self._start(ctx, run, "plan", {})
        if last["status"] != "succeeded":
            reason = f"the {last['kind']} stage ({last['id']}) {last['status']}"
            if last.get("error"):
                reason += f": {last['error']}"
            await self.finish(ctx, run, "failed", {"reason": reason}, error=reason)
            return {"status": "failed"}
        if last["kind"] == "plan":
            if until == "plan":
                return await self._succeed(ctx, run, last, "stopped after the plan stage")
            return await self._start(ctx, run, "implement", {"plan_run": last["id"]})
        if last["kind"] == "implement":
            if until == "implement":
                return await self._succeed(ctx, run, last, "stopped after the implement stage")
            return await self._start(ctx, run, "critic", {"target_run": last["id"]})
        return await self._gate(ctx, run, kids, review["escalations"], last)

    async def _children(self, run: dict[str, Any]) -> list[dict[str, Any]]:
        kids: list[dict[str, Any]] = (await self.runs.review(run["id"]))["children"]
        return kids

    async def _release(self, ctx: JobContext) -> None:
        async with ctx.store.write() as conn:
            await ctx.finish_in(conn, {"status": "waiting"})

    async def _start(
        self,
        ctx: JobContext,
        run: dict[str, Any],
        kind: str,
        params: dict[str, Any],
    ) -> dict[str, str]:
        # The pipeline's own --model is its plan and implement stages' explicit choice; without
        # one each stage takes its agent's or its role's model. The critic picks its own (by
        # default one of another vendor than the implementer's).
        model, api_base = _explicit(run) if kind != "critic" else (None, None)
        child = await self.runs.create(
            kind,
            run["goal"],
            run["workspace"],
            model=model,
            api_base=api_base,
            agent=None if kind != "implement" else run["agent"],
            params=params,
            parent_id=run["id"],
            choices=_client_settings(run),
        )
        async with ctx.store.write() as conn:
            await ctx.fence(conn)
            event = await events_repo.append(
                conn, run["id"], "stage.started", {"stage": kind, "run_id": child["id"]}
            )
            await ctx.finish_in(conn, {"status": "waiting"})
        self.runs.bus.publish([event])
        return {"status": "waiting", "stage": kind}

    async def _succeed(
        self, ctx: JobContext, run: dict[str, Any], last: dict[str, Any], note: str
    ) -> dict[str, str]:
        if run["model"] == DEMO_MODEL:
            note = f"{note} {DEMO_BANNER}"
        output = {"stage": last["kind"], "run_id": last["id"], "note": note}
        if last["kind"] == "critic":
            output["assessment"] = (last.get("output") or {}).get("assessment")
        await self.finish(ctx, run, "succeeded", {"output": output}, output=output)
        return {"status": "succeeded"}

    async def _gate(
        self,
        ctx: JobContext,
        run: dict[str, Any],
        kids: list[dict[str, Any]],
        steps: list[dict[str, Any]],
        critic: dict[str, Any],
    ) -> dict[str, str]:
        out = critic.get("output") or {}
        assessment = out.get("assessment") or {}
        verdict = assessment.get("verdict")
        if verdict == "pass":
            return await self._succeed(ctx, run, critic, "the change passed review")
        score = assessment.get("score")
        why = f"the critic said {verdict} ({score}/100): {assessment.get('summary', '')}".strip()
        gate_id = f"gate-{out.get('assessment_id')}"
        decision = ((run.get("params") or {}).get("decisions") or {}).get(gate_id)
        if decision is not None:
            return await self._human_answered(ctx, run, critic, gate_id, decision, why)
        profile = await self.agents.profile(run["agent"])
        policy = profile.escalation
        revisions = sum(1 for s in steps if s["action"] == "revise")
        implement = [k for k in kids if k["kind"] == "implement"][-1]
        if revisions < int(policy["max_revisions"]):
            return await self._escalate(
                ctx,
                run,
                "revise",
                f"{why}; revision {revisions + 1} of {policy['max_revisions']}",
                out,
                child=("implement", self._revision(implement, assessment), None),
            )
        stronger = policy.get("stronger_model")
        if stronger and not any(s["action"] == "stronger_model" for s in steps):
            return await self._escalate(
                ctx,
                run,
                "stronger_model",
                f"{why}; trying the stronger model {stronger}",
                out,
                child=("implement", self._revision(implement, assessment), stronger),
            )
        if policy.get("human", True):
            pending = {
                "id": gate_id,
                "kind": "quality_gate",
                "class": None,
                "reason": why,
                "assessment": assessment,
                "run_id": critic["id"],
            }
            async with ctx.store.write() as conn:
                await ctx.fence(conn)
                events = [await _step(conn, run, "human", f"{why}; asking a human", out)]
                events += await self.runs.pause(conn, run, pending)
                await ctx.finish_in(conn, {"status": "needs_approval"})
            self.runs.bus.publish(events)
            return {"status": "needs_approval"}
        reason = f"quality gate failed after escalation: {why}"
        await self._record(ctx, run, "rejected", reason, out)
        await self.finish(ctx, run, "failed", {"reason": reason}, error=reason)
        return {"status": "failed"}

    @staticmethod
    def _revision(implement: dict[str, Any], assessment: dict[str, Any]) -> dict[str, Any]:
        """What a revision of ``implement`` is told: the findings, and where to go on working."""
        return {
            "sandbox_of": implement["id"],
            "findings": assessment.get("findings") or [],
            "review_summary": assessment.get("summary") or "",
        }

    async def _escalate(
        self,
        ctx: JobContext,
        run: dict[str, Any],
        action: str,
        reason: str,
        out: dict[str, Any],
        *,
        child: tuple[str, dict[str, Any], str | None],
    ) -> dict[str, str]:
        kind, internal, stronger = child
        kids = await self._children(run)
        plan_run = next((k["id"] for k in kids if k["kind"] == "plan"), None)
        # A revision keeps the stages' choice; the stronger model is the escalation's choice
        # and is called at its own server (ADR 0020).
        model, api_base = _explicit(run) if stronger is None else (None, None)
        last = [k for k in kids if k["kind"] == "implement"][-1]
        created = await self.runs.create(
            kind,
            run["goal"],
            run["workspace"],
            model=model,
            api_base=api_base,
            agent=run["agent"],
            params={"plan_run": plan_run} if plan_run else {},
            parent_id=run["id"],
            internal=internal,
            escalation=stronger,
            served=(last["model"], last.get("api_base")),
            choices=_client_settings(run),
        )
        async with ctx.store.write() as conn:
            await ctx.fence(conn)
            event = await _step(conn, run, action, reason, out, child_run_id=created["id"])
            await ctx.finish_in(conn, {"status": "waiting"})
        self.runs.bus.publish([event])
        return {"status": "waiting", "stage": kind}

    async def _record(
        self, ctx: JobContext, run: dict[str, Any], action: str, reason: str, out: dict[str, Any]
    ) -> None:
        async with ctx.store.write() as conn:
            await ctx.fence(conn)
            event = await _step(conn, run, action, reason, out)
        self.runs.bus.publish([event])

    async def _human_answered(
        self,
        ctx: JobContext,
        run: dict[str, Any],
        critic: dict[str, Any],
        gate_id: str,
        decision: dict[str, Any],
        why: str,
    ) -> dict[str, str]:
        out = critic.get("output") or {}
        said = decision.get("reason") or "no reason given"
        if decision.get("approve"):
            await self._record(ctx, run, "accepted", f"a human accepted the change ({said})", out)
            return await self._succeed(ctx, run, critic, f"accepted by a human despite: {why}")
        reason = f"a human rejected the change ({said}) after: {why}"
        await self._record(ctx, run, "rejected", reason, out)
        await self.finish(ctx, run, "failed", {"reason": reason}, error=reason)
        return {"status": "failed"}


def _explicit(run: dict[str, Any]) -> tuple[str | None, str | None]:
    """The model and server the user named for a pipeline (None, None when they named none)."""
    choice = (run.get("params") or {}).get("model_choice")
    if choice is None or choice.get("reason") == "run":
        # A pipeline queued before choices were recorded goes on as it began.
        return run["model"], run.get("api_base")
    return None, None


def _client_settings(run: dict[str, Any]) -> dict[str, Any] | None:
    """The settings the client sent with the pipeline (``KYROS_MODEL``, a trusted project
    file: ADR 0017): each stage chooses with them as the pipeline did, so they stand where the
    daemon's ``model`` and ``api_base`` would — below the stage's agent and role."""
    settings = (run.get("params") or {}).get("client_settings")
    return dict(settings) if isinstance(settings, dict) else None


async def _step(
    conn: Conn,
    run: dict[str, Any],
    action: str,
    reason: str,
    out: dict[str, Any],
    *,
    child_run_id: str | None = None,
) -> dict[str, Any]:
    """One escalation step: its ``escalation_workflows`` row and its event, in ``conn``."""
    await quality_repo.add_escalation(
        conn,
        run_id=run["id"],
        action=action,
        reason=reason,
        assessment_id=out.get("assessment_id"),
        child_run_id=child_run_id,
    )
    data = {"action": action, "reason": reason}
    if child_run_id:
        data["run_id"] = child_run_id
    return await events_repo.append(conn, run["id"], "escalation", data)
