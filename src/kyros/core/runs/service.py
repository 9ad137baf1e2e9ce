"""Runs: creating them with their job, reading them, their events, approvals, cancelling them.

Every state change writes its event in the same transaction and publishes it after commit, so
the event log and the run row can never disagree and no subscriber sees an uncommitted event.
A run waiting for a human (``needs_approval``) holds no job: its wait is a row, so it survives
any restart, and the answer queues a fresh job that resumes it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kyros.core.agents import DEFAULT_AGENT, Profile
from kyros.core.ai.catalogue import ROLE_OF_KIND, Catalogue
from kyros.core.ai.choice import ModelChoice, choose, choose_critic
from kyros.core.ai.models import ResolvedModel
from kyros.core.ai.router import Router
from kyros.core.bus import EventBus
from kyros.core.ids import new_id
from kyros.core.runs.spending import BudgetBook
from kyros.core.store import agents as agents_repo
from kyros.core.store import events as events_repo
from kyros.core.store import jobs as jobs_repo
from kyros.core.store import quality as quality_repo
from kyros.core.store import runs as runs_repo
from kyros.core.store import threads as threads_repo
from kyros.core.store import usage as usage_repo
from kyros.core.store.bridge import Conn
from kyros.core.store.engine import Store
from kyros.core.store.schema import utcnow
from kyros.core.workspace.applydiff import apply_to_source
from kyros.core.workspace.sandbox import Sandbox
from kyros.errors import Conflict, InvalidInput, NotFound
from kyros.redaction import Redactor
from kyros.statuses import TERMINAL_STATUSES

KINDS = frozenset({"plan", "implement", "critic", "pipeline"})
#: Parameters each kind accepts (``continue_run`` and ``budget`` are accepted by all).
KIND_PARAMS = {
    "plan": frozenset(),
    "implement": frozenset({"plan_run"}),
    "critic": frozenset({"target_run", "diff", "range"}),
    "pipeline": frozenset({"until", "plan_run"}),
}
COMMON_PARAMS = frozenset({"continue_run", "budget"})


@dataclass
class RunService:
    """The run lifecycle. ``wake`` tells the local worker pool that a job is waiting."""

    store: Store
    bus: EventBus
    catalogue: Catalogue
    router: Router = field(default_factory=Router)
    book: BudgetBook = field(default_factory=BudgetBook)
    max_attempts: int = 3
    wake: Callable[[], None] = lambda: None
    cancel_local: Callable[[int], bool] = lambda job_id: False
    #: Called before a run is created: raises when the settings cannot be used right now
    #: (the daemon's config file changed into something invalid).
    settings_check: Callable[[], None] = lambda: None
    #: Run kinds plugins added (see ``HandlerRegistry.register_run``).
    plugin_kinds: set[str] = field(default_factory=set)

    @property
    def kinds(self) -> list[str]:
        """Every run kind that can be started: the built-ins, then the plugins'."""
        return [*sorted(KINDS), *sorted(self.plugin_kinds - KINDS)]

    def resolve(
        self, model: str | None, api_base: str | None, role: str | None = None
    ) -> ResolvedModel:
        """The model a run would use with these choices (raises ModelNotConfigured)."""
        return self.catalogue.resolve(model, api_base, role=role)

    @property
    def redactor(self) -> Redactor:
        """Hides every provider key known right now (keys may be stored while we run)."""
        return Redactor(self.catalogue.keys().values())

    async def create(
        self,
        kind: str,
        goal: str,
        workspace: str,
        *,
        model: str | None = None,
        api_base: str | None = None,
        agent: str | None = None,
        params: dict[str, Any] | None = None,
        parent_id: str | None = None,
        internal: dict[str, Any] | None = None,
        choices: dict[str, Any] | None = None,
        escalation: str | None = None,
        served: tuple[str, str | None] | None = None,
    ) -> dict[str, Any]:
        """Validate a run's inputs, then store it with its job (nothing is queued on error).

        ``internal`` carries what only kyros itself sets (a revision's findings and worktree);
        the API has no way to pass it, nor ``escalation`` (the stronger model an escalation
        step asks for) and ``served`` (the model and server of the stage it escalates).
        ``choices`` are the settings the client resolved from its own environment or trusted
        project file (``model``, ``api_base`` and their ``sources``): for this run they stand
        where the daemon's own ``model`` and ``api_base`` settings would. The model is chosen
        by :func:`kyros.core.ai.choice.choose`; the choice and its reason are stored in
        ``params.model_choice``.
        """
        if kind not in self.kinds:
            raise InvalidInput(f"unknown run kind {kind!r}; kinds: {', '.join(self.kinds)}")
        params = {k: v for k, v in (params or {}).items() if v is not None}
        unknown = set(params) - KIND_PARAMS.get(kind, frozenset()) - COMMON_PARAMS
        if unknown:
            raise InvalidInput(f"a {kind} run does not take {', '.join(sorted(unknown))}")
        root = Path(workspace)
        if not root.is_absolute():
            raise InvalidInput("workspace must be an absolute path")
        if not root.is_dir():
            raise InvalidInput(f"workspace {workspace!r} is not a directory")
        self.settings_check()
        choices = {k: v for k, v in (choices or {}).items() if v is not None}
        sources = dict(choices.pop("sources", None) or {})
        catalogue = self.catalogue.choosing(choices) if choices else self.catalogue
        await self.catalogue.refresh()
        agent_name = agent or DEFAULT_AGENT.get(kind, "implementer")
        async with self.store.read() as conn:
            row = await agents_repo.get(conn, agent_name)
            if row is None:
                raise NotFound(f"no agent named {agent_name!r}; `kyros agents list` shows them")
            profile = Profile.from_row(row)
            refs: dict[str, dict[str, Any]] = {
                key: await self._ref(conn, key, params[key])
                for key in ("plan_run", "target_run", "continue_run")
                if key in params
            }
            parent = await runs_repo.get(conn, parent_id) if parent_id else None
        if profile.paused:
            raise Conflict(f"agent {agent_name!r} is paused; resume it with `kyros agents edit`")
        self._check_refs(kind, params, refs)
        choice = self.choose(
            kind, model, api_base, profile, refs, parent, escalation, served, catalogue
        )
        resolved = choice.resolved
        run_id = new_id("r")
        async with self.store.write() as conn:
            if parent is not None and parent.get("thread_id"):
                thread_id = parent["thread_id"]
            elif "continue_run" in refs and refs["continue_run"].get("thread_id"):
                thread_id = refs["continue_run"]["thread_id"]
            else:
                thread_id = await threads_repo.create(conn, goal[:200])
            await runs_repo.insert_run(
                conn,
                id=run_id,
                kind=kind,
                goal=goal,
                workspace=str(root),
                agent=agent_name,
                model=resolved.name,
                api_base=resolved.api_base,
                params={
                    **params,
                    **(internal or {}),
                    "model_choice": choice.record(),
                    # Kept for the runs this one makes (a pipeline's stages): they choose as it did.
                    **({"client_settings": {**choices, "sources": sources}} if choices else {}),
                },
                parent_id=parent_id,
                thread_id=thread_id,
            )
            job_id = await jobs_repo.enqueue(
                conn, kind, {"run_id": run_id}, run_id=run_id, max_attempts=self.max_attempts
            )
            await runs_repo.set_fields(conn, run_id, job_id=job_id)
            event = await events_repo.append(
                conn,
                run_id,
                "run.queued",
                {
                    "kind": kind,
                    "model": resolved.name,
                    "agent": agent_name,
                    "job_id": job_id,
                    "model_choice": choice.record(),
                    # where the client found the settings it sent, for the record
                    **(
                        {"settings_from": {k: v for k, v in sources.items() if k in choices}}
                        if sources
                        else {}
                    ),
                },
            )
            events = [event]
            if choice.reason == "critic:other-vendor":
                events.append(
                    await events_repo.append(
                        conn,
                        run_id,
                        "model.replaced",
                        {
                            **choice.record(),
                            "why": "the critic reviews with another vendor's model than the "
                            "change's (setting critic_other_vendor)",
                        },
                    )
                )
        self.bus.publish(events)
        self.wake()
        return await self.get(run_id)

    def choose(
        self,
        kind: str,
        model: str | None,
        api_base: str | None,
        profile: Profile,
        refs: dict[str, dict[str, Any]],
        parent: dict[str, Any] | None,
        escalation: str | None = None,
        served: tuple[str, str | None] | None = None,
        catalogue: Catalogue | None = None,
    ) -> ModelChoice:
        """The model a new run of ``kind`` uses, and why (the order is :mod:`choice`'s).
        ``catalogue``: this run's view of the settings (the client's choices), else the daemon's."""
        catalogue = catalogue or self.catalogue
        if kind == "critic" and not escalation:
            judged = refs.get("target_run")
            if judged is None and parent is not None:
                # A pipeline's critic judges the pipeline's latest implement stage.
                judged = parent
            return choose_critic(
                catalogue,
                judged=judged,
                other_vendor=catalogue.settings.critic_other_vendor,
                run_model=model,
                api_base=api_base,
                agent_model=profile.model,
            )
        return choose(
            catalogue,
            role=ROLE_OF_KIND.get(kind),
            run_model=model,
            api_base=api_base,
            escalation=escalation,
            served=served,
            agent_model=profile.model,
        )

    @staticmethod
    async def _ref(conn: Conn, key: str, run_id: str) -> dict[str, Any]:
        run = await runs_repo.get(conn, run_id)
        if run is None:
            raise NotFound(f"{key.replace('_', ' ')}: no run with id {run_id!r}")
        return run

    @staticmethod
    def _check_refs(kind: str, params: dict[str, Any], refs: dict[str, dict[str, Any]]) -> None:
        plan = refs.get("plan_run")
        if plan is not None and (plan["kind"] != "plan" or plan["status"] != "succeeded"):
            raise InvalidInput(
                f"--plan needs a plan run that succeeded; {plan['id']} is a {plan['kind']} "
                f"run that is {plan['status']}"
            )
        if kind == "critic":
            given = [k for k in ("target_run", "diff", "range") if k in params]
            if len(given) != 1:
                raise InvalidInput("a critic run reviews exactly one of: a run, a diff, a range")
            target = refs.get("target_run")
            if target is not None and target["kind"] not in ("implement", "pipeline"):
                raise InvalidInput(f"run {target['id']} is a {target['kind']} run: no diff")
            if "range" in params and ".." not in params["range"]:
                raise InvalidInput("a range looks like A..B (two git revisions)")

    async def get(self, run_id: str) -> dict[str, Any]:
        async with self.store.read() as conn:
            run = await runs_repo.get(conn, run_id)
        if run is None:
            raise NotFound(f"no run with id {run_id!r}")
        return run

    async def list_runs(
        self,
        *,
        limit: int = 50,
        status: str | None = None,
        kind: str | None = None,
        before: str | None = None,
    ) -> list[dict[str, Any]]:
        """Runs, newest first; ``before`` (a run id) gives the page after that run."""
        async with self.store.read() as conn:
            anchor = None  # the run the page starts after
            if before is not None:
                anchor = await runs_repo.get(conn, before)
                if anchor is None:
                    raise NotFound(f"no run with id {before!r} to list the runs before")
            return await runs_repo.list_runs(
                conn, limit=limit, status=status, kind=kind, before=anchor
            )

    async def review(self, run_id: str, *, with_usage: bool = False) -> dict[str, Any]:
        """A run's children, the assessments made by or about it, and its escalation steps;
        ``with_usage``: also its model calls with its stages' (``usage``), from the ledger."""
        async with self.store.read() as conn:
            if await runs_repo.get(conn, run_id) is None:
                raise NotFound(f"no run with id {run_id!r}")
            kids = await runs_repo.children(conn, run_id)
            ids = [run_id] + [k["id"] for k in kids]
            out: dict[str, Any] = {
                "children": kids,
                "assessments": await quality_repo.assessments_for(conn, ids),
                "escalations": await quality_repo.escalations_for(conn, run_id),
                "attempts": await jobs_repo.attempts_of(conn, run_ids=[run_id]),
            }
            if with_usage:
                out["usage"] = await usage_repo.totals_for(conn, ids)
            return out

    async def events_after(
        self, run_id: str, after_seq: int, limit: int = 1000
    ) -> list[dict[str, Any]]:
        async with self.store.read() as conn:
            return await events_repo.after(conn, run_id, after_seq, limit)

    async def emit(self, run_id: str, type_: str, data: dict[str, Any]) -> dict[str, Any]:
        """Append one event in its own transaction and publish it."""
        async with self.store.write() as conn:
            event = await events_repo.append(conn, run_id, type_, data)
        self.bus.publish([event])
        return event

    async def transition(
        self,
        conn: Conn,
        run_id: str,
        status: str,
        event_type: str,
        data: dict[str, Any],
        **fields: Any,
    ) -> dict[str, Any]:
        """Change a run's status inside ``conn``'s transaction; returns the event to publish."""
        now = utcnow()
        if status == "running":
            fields.setdefault("started_at", now)
        if status in TERMINAL_STATUSES:
            fields.setdefault("finished_at", now)
        await runs_repo.set_fields(conn, run_id, status=status, **fields)
        return await events_repo.append(conn, run_id, event_type, {"status": status, **data})

    async def end(
        self, conn: Conn, run: dict[str, Any], status: str, data: dict[str, Any], **fields: Any
    ) -> list[dict[str, Any]]:
        """Move ``run`` to ``status`` (final, or ``needs_approval``) inside ``conn``.

        A child run that ends queues its parent's next step in the same transaction, so a
        pipeline can never miss that a stage finished.
        """
        events = [await self.transition(conn, run["id"], status, f"run.{status}", data, **fields)]
        if run.get("parent_id") and status in TERMINAL_STATUSES:
            await self._queue(conn, run["parent_id"], "pipeline")
        return events

    async def _queue(self, conn: Conn, run_id: str, kind: str) -> int:
        job_id = await jobs_repo.enqueue(
            conn, kind, {"run_id": run_id}, run_id=run_id, max_attempts=self.max_attempts
        )
        await runs_repo.set_fields(conn, run_id, job_id=job_id)
        return job_id

    async def pause(
        self, conn: Conn, run: dict[str, Any], pending: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """Stop ``run`` in ``needs_approval`` waiting on ``pending`` (the exact action)."""
        return [
            await self.transition(
                conn,
                run["id"],
                "needs_approval",
                "approval.requested",
                {"pending": pending},
                pending=pending,
            )
        ]

    async def answer(
        self, run_id: str, *, approve: bool, always: bool = False, reason: str | None = None
    ) -> dict[str, Any]:
        """A human's answer to a run waiting in ``needs_approval``; the run resumes either way."""
        async with self.store.write() as conn:
            run = await runs_repo.get_for_update(conn, run_id)
            if run is None:
                raise NotFound(f"no run with id {run_id!r}")
            pending = run.get("pending")
            if run["status"] != "needs_approval" or not pending:
                raise Conflict(f"run {run_id} is {run['status']}; it is not waiting for approval")
            params = dict(run.get("params") or {})
            decisions = dict(params.get("decisions") or {})
            decisions[str(pending["id"])] = {"approve": approve, "reason": reason}
            params["decisions"] = decisions
            if approve and always and pending.get("class"):
                params["always"] = sorted({*params.get("always", []), pending["class"]})
            await runs_repo.set_fields(conn, run_id, params=params)
            event = await self.transition(
                conn,
                run_id,
                "queued",
                "run.approved" if approve else "run.denied",
                {"pending": pending, "reason": reason, "always": always},
                pending=None,
            )
            await self._queue(conn, run_id, run["kind"])
        self.bus.publish([event])
        self.wake()
        return await self.get(run_id)

    async def apply(self, run_id: str) -> dict[str, Any]:
        """Bring a finished implement run's diff (a pipeline's latest) into the user's tree."""
        run = await self.get(run_id)
        source = run
        if run["kind"] == "pipeline":
            kids = (await self.review(run_id))["children"]
            done = [k for k in kids if k["kind"] == "implement" and k["status"] == "succeeded"]
            if not done:
                raise Conflict(f"pipeline {run_id} has no finished implement stage to apply")
            source = done[-1]
        elif run["kind"] != "implement":
            raise InvalidInput(f"run {run_id} is a {run['kind']} run; only changes can be applied")
        output = source.get("output") or {}
        if source["status"] != "succeeded" or "sandbox" not in output:
            raise Conflict(f"run {source['id']} is {source['status']}; it has no change to apply")
        if not output.get("diff"):
            raise Conflict(f"run {source['id']} changed nothing; there is nothing to apply")
        if (source.get("params") or {}).get("applied"):
            raise Conflict(f"run {source['id']} was applied already")
        if (source.get("params") or {}).get("discarded"):
            raise Conflict(f"run {source['id']} was discarded; its change can no longer be applied")
        sandbox = Sandbox.from_json(output["sandbox"])
        result = await asyncio.to_thread(apply_to_source, sandbox, output["diff"])
        async with self.store.write() as conn:
            params = {**(source.get("params") or {}), "applied": True}
            await runs_repo.set_fields(conn, source["id"], params=params)
            event = await events_repo.append(
                conn, source["id"], "run.applied", {"files": result.files}
            )
        self.bus.publish([event])
        return {
            "run_id": source["id"],
            "workspace": source["workspace"],
            "files": result.files,
            "summary": result.summary,
        }

    async def cancel(self, run_id: str) -> dict[str, Any]:
        events: list[dict[str, Any]] = []
        local: list[int] = []
        async with self.store.write() as conn:
            run = await runs_repo.get_for_update(conn, run_id)
            if run is None:
                raise NotFound(f"no run with id {run_id!r}")
            if run["status"] in TERMINAL_STATUSES:
                raise Conflict(f"run {run_id} already {run['status']}; nothing to cancel")
            # A pipeline's stages go with it.
            for target in [run, *await runs_repo.children(conn, run_id)]:
                if target["status"] in TERMINAL_STATUSES:
                    continue
                events += await self._cancel_one(conn, target)
                if target.get("job_id") is not None:
                    local.append(int(target["job_id"]))
        self.bus.publish(events)
        for job_id in local:
            self.cancel_local(job_id)
        return await self.get(run_id)

    async def _cancel_one(self, conn: Conn, run: dict[str, Any]) -> list[dict[str, Any]]:
        job_status = None
        if run.get("job_id") is not None:
            job_status = await jobs_repo.request_cancel(conn, int(run["job_id"]))
        if job_status == "running":
            return [await events_repo.append(conn, run["id"], "run.cancel_requested", {})]
        return [
            await self.transition(
                conn,
                run["id"],
                "cancelled",
                "run.cancelled",
                {"reason": "cancelled by request"},
                pending=None,
            )
        ]

    async def attempt_lost(self, conn: Conn, r: Any) -> list[dict[str, Any]]:
        """The reaper re-queued a run's job whose worker stopped renewing its lease (a daemon
        killed or hung; ``r`` is its ``Reaped`` account): the run's events say so, with when and
        how it runs again; the next attempt says ``run.retried``."""
        if r.run_id is None:
            return []
        run = await runs_repo.get(conn, r.run_id)
        if run is None or run["status"] in TERMINAL_STATUSES:
            return []
        event = await events_repo.append(
            conn,
            r.run_id,
            "run.attempt_lost",
            {
                "job_id": r.job_id,
                "attempt": r.attempt,
                "outcome": r.outcome,
                "beside": r.beside,
                "stalls": r.stalls,
                "retry_at": r.retry_at.isoformat() if r.retry_at else None,
                "reason": r.reason
                or "its worker stopped renewing the lease (the daemon was killed or hung)",
            },
        )
        return [event]

    async def give_up(
        self, conn: Conn, job_id: int, run_id: str | None, status: str, reason: str
    ) -> list[dict[str, Any]]:
        """The queue gave up on a run's job: the run ends too (failed or cancelled)."""
        if run_id is None:
            return []
        run = await runs_repo.get_for_update(conn, run_id)
        if run is None or run["status"] in TERMINAL_STATUSES:
            return []
        final = "cancelled" if status == "cancelled" else "failed"
        return await self.end(
            conn, run, final, {"reason": reason}, error=None if final == "cancelled" else reason
        )
