"""Runs: creating them with their job, reading them, their events, cancelling them.

Every state change writes its event in the same transaction and publishes it after commit, so
the event log and the run row can never disagree and no subscriber sees an uncommitted event.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kyros.core.ai.models import ResolvedModel, resolve_model
from kyros.core.bus import EventBus
from kyros.core.ids import new_id
from kyros.core.store import events as events_repo
from kyros.core.store import jobs as jobs_repo
from kyros.core.store import runs as runs_repo
from kyros.core.store.bridge import Conn
from kyros.core.store.engine import Store
from kyros.core.store.schema import utcnow
from kyros.errors import Conflict, InvalidInput, NotFound
from kyros.protocol import TERMINAL_STATUSES

KINDS_READY = frozenset({"plan"})


@dataclass
class RunService:
    """The run lifecycle. ``wake`` tells the local worker pool that a job is waiting."""

    store: Store
    bus: EventBus
    provider_keys: dict[str, str]
    default_model: str | None = None
    default_api_base: str | None = None
    max_attempts: int = 3
    wake: Callable[[], None] = lambda: None
    cancel_local: Callable[[int], bool] = lambda job_id: False

    def resolve(self, model: str | None, api_base: str | None) -> ResolvedModel:
        """The model a run would use with these choices (raises ModelNotConfigured)."""
        return resolve_model(
            model or self.default_model, api_base or self.default_api_base, self.provider_keys
        )

    async def create(
        self,
        kind: str,
        goal: str,
        workspace: str,
        *,
        model: str | None = None,
        api_base: str | None = None,
        agent: str | None = None,
    ) -> dict[str, Any]:
        if kind not in KINDS_READY:
            raise InvalidInput(f"run kind {kind!r} is not available yet; available: plan")
        root = Path(workspace)
        if not root.is_absolute():
            raise InvalidInput("workspace must be an absolute path")
        if not root.is_dir():
            raise InvalidInput(f"workspace {workspace!r} is not a directory")
        resolved = self.resolve(model, api_base)
        run_id = new_id("r")
        async with self.store.write() as conn:
            await runs_repo.insert_run(
                conn,
                id=run_id,
                kind=kind,
                goal=goal,
                workspace=str(root),
                agent=agent or "planner",
                model=resolved.name,
                api_base=resolved.api_base,
            )
            job_id = await jobs_repo.enqueue(
                conn, kind, {"run_id": run_id}, run_id=run_id, max_attempts=self.max_attempts
            )
            await runs_repo.set_fields(conn, run_id, job_id=job_id)
            event = await events_repo.append(
                conn,
                run_id,
                "run.queued",
                {"kind": kind, "model": resolved.name, "job_id": job_id},
            )
        self.bus.publish([event])
        self.wake()
        return await self.get(run_id)

    async def get(self, run_id: str) -> dict[str, Any]:
        async with self.store.read() as conn:
            run = await runs_repo.get(conn, run_id)
        if run is None:
            raise NotFound(f"no run with id {run_id!r}")
        return run

    async def list_runs(
        self, *, limit: int = 50, status: str | None = None, kind: str | None = None
    ) -> list[dict[str, Any]]:
        async with self.store.read() as conn:
            return await runs_repo.list_runs(conn, limit=limit, status=status, kind=kind)

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

    async def cancel(self, run_id: str) -> dict[str, Any]:
        events: list[dict[str, Any]] = []
        async with self.store.write() as conn:
            run = await runs_repo.get_for_update(conn, run_id)
            if run is None:
                raise NotFound(f"no run with id {run_id!r}")
            if run["status"] in TERMINAL_STATUSES:
                raise Conflict(f"run {run_id} already {run['status']}; nothing to cancel")
            job_status = None
            if run.get("job_id") is not None:
                job_status = await jobs_repo.request_cancel(conn, int(run["job_id"]))
            if job_status != "running":
                events.append(
                    await self.transition(
                        conn,
                        run_id,
                        "cancelled",
                        "run.cancelled",
                        {"reason": "cancelled by request"},
                    )
                )
            else:
                events.append(await events_repo.append(conn, run_id, "run.cancel_requested", {}))
        self.bus.publish(events)
        if run.get("job_id") is not None:
            self.cancel_local(int(run["job_id"]))
        return await self.get(run_id)

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
        return [
            await self.transition(
                conn,
                run_id,
                final,
                f"run.{final}",
                {"reason": reason},
                error=None if final == "cancelled" else reason,
            )
        ]
