"""Worktree hygiene: a run's sandbox goes once its change is applied or discarded, or it is old.

Every implement run works in a sandbox of its own (``<sandboxes>/<run-id>``, a git worktree on
branch ``kyros/<run-id>``, or a copy). Left alone, ``git worktree list`` grew by one entry per
run. Now a sandbox is removed

* when its change is applied (``kyros run apply``) — the change is in the user's tree;
* when it is discarded (``kyros runs discard``) — the user does not want it;
* when its run ended more than ``worktree_retention_days`` ago (swept hourly by the daemon);
* by ``kyros runs clean [--older-than 7d]``, for every run that has ended (or ended that long
  ago).

The run's diff stays in the store: ``kyros runs diff`` shows it and ``kyros run apply`` still
applies it afterwards. The branch goes with the worktree unless the run committed on it (then
it is the only place those commits are, and it is kept); a discard deletes the branch always.
A sandbox still used by a run that has not ended — its own, or a revision working in the
worktree of the run it revises — is never touched.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kyros.core.runs.service import RunService
from kyros.core.store import events as events_repo
from kyros.core.store import runs as runs_repo
from kyros.core.workspace.sandbox import (
    Sandbox,
    has_own_commits,
    recorded_sandboxes,
    remove_sandbox,
)
from kyros.errors import Conflict, InvalidInput
from kyros.statuses import TERMINAL_STATUSES

log = logging.getLogger("kyros.runs")

#: How often the daemon removes sandboxes past their retention.
SWEEP_SECONDS = 3600.0


@dataclass(frozen=True)
class Removed:
    """One sandbox removed: whose, why, and whether its branch was kept."""

    run_id: str
    reason: str
    branch: str | None
    branch_kept: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "reason": self.reason,
            "branch": self.branch,
            "branch_kept": self.branch_kept,
        }


class Worktrees:
    """Removes runs' sandboxes under ``sandboxes`` as the module docstring says."""

    def __init__(self, runs: RunService, sandboxes: Path, retention_days: float) -> None:
        self.runs = runs
        self.sandboxes = sandboxes
        self.retention_days = retention_days
        self._lock = asyncio.Lock()  # one removal at a time: git locks the repository anyway

    async def apply(self, run_id: str) -> dict[str, Any]:
        """Apply the run's change (see :meth:`RunService.apply`), then remove its sandbox."""
        result = await self.runs.apply(run_id)
        source = await self.runs.get(result["run_id"])
        removed = await self._remove_for(source, "applied", delete_branch=False)
        return {**result, "worktree_removed": removed is not None}

    async def discard(self, run_id: str) -> dict[str, Any]:
        """Throw a finished run's change away: its sandbox and branch go, and it can no longer
        be applied. A pipeline's stages are discarded with it."""
        run = await self.runs.get(run_id)
        if run["kind"] not in ("implement", "pipeline"):
            raise InvalidInput(f"run {run_id} is a {run['kind']} run; it has no change to discard")
        if run["status"] not in TERMINAL_STATUSES:
            raise Conflict(
                f"run {run_id} is {run['status']}; cancel it first (`kyros runs cancel {run_id}`)"
            )
        targets = [run]
        if run["kind"] == "pipeline":
            kids = (await self.runs.review(run_id))["children"]
            targets = [k for k in kids if k["kind"] == "implement"]
        removed = []
        for target in targets:
            if (target.get("params") or {}).get("applied"):
                raise Conflict(f"run {target['id']} was applied already; there is nothing to undo")
            async with self.runs.store.write() as conn:
                params = {**(target.get("params") or {}), "discarded": True}
                await runs_repo.set_fields(conn, target["id"], params=params)
                event = await events_repo.append(conn, target["id"], "run.discarded", {})
            self.runs.bus.publish([event])
            gone = await self._remove_for(target, "discarded", delete_branch=True)
            if gone is not None:
                removed.append(gone.to_json())
        return {"run_id": run_id, "removed": removed}

    async def clean(self, older_than: float = 0.0) -> list[dict[str, Any]]:
        """Remove the sandbox of every run that ended more than ``older_than`` seconds ago."""
        return [r.to_json() for r in await self._sweep(older_than, "cleaned")]

    async def sweep(self) -> list[Removed]:
        """Remove sandboxes past the retention setting (0 keeps them until cleaned)."""
        if self.retention_days <= 0:
            return []
        return await self._sweep(self.retention_days * 86400, "expired")

    # --- removing -------------------------------------------------------------------------

    async def _sweep(self, older_than: float, reason: str) -> list[Removed]:
        if older_than < 0:
            raise InvalidInput("older_than must be 0 or more seconds")
        cutoff = datetime.now(UTC) - timedelta(seconds=older_than)
        found = await asyncio.to_thread(recorded_sandboxes, self.sandboxes)
        if not found:
            return []
        async with self.runs.store.read() as conn:
            rows = {sb.run_id: await runs_repo.get(conn, sb.run_id) for sb in found}
        in_use = await self._in_use()
        removed = []
        for sb in found:
            run = rows.get(sb.run_id)
            if run is None or sb.run_id in in_use or run["status"] not in TERMINAL_STATUSES:
                continue
            ended = run.get("finished_at") or run.get("updated_at")
            if ended is not None and ended > cutoff:
                continue
            gone = await self._remove(run, sb, reason, delete_branch=False)
            removed.append(gone)
        return removed

    async def _in_use(self) -> set[str]:
        """Sandboxes (by run id) a run that has not ended works in."""
        busy: set[str] = set()
        async with self.runs.store.read() as conn:
            for status in ("queued", "running", "needs_approval", "escalated"):
                for run in await runs_repo.list_runs(conn, limit=10_000, status=status):
                    busy.add(run["id"])
                    previous = (run.get("params") or {}).get("sandbox_of")
                    if previous:
                        busy.add(str(previous))
        return busy

    async def _remove_for(
        self, run: dict[str, Any], reason: str, *, delete_branch: bool
    ) -> Removed | None:
        record = (run.get("output") or {}).get("sandbox")
        if record:
            sb: Sandbox | None = Sandbox.from_json(record)
        else:  # a run that did not finish: its sandbox is known by its record on disk
            on_disk = await asyncio.to_thread(recorded_sandboxes, self.sandboxes)
            sb = next((s for s in on_disk if s.run_id == run["id"]), None)
        if sb is None or not (sb.top.exists() or sb.top.with_name(f"{sb.top.name}.json").exists()):
            return None  # removed already
        if sb.run_id != run["id"]:
            # A revision works in the worktree of the run it revises: that run owns it.
            owner = await self.runs.get(sb.run_id)
            return await self._remove(owner, sb, reason, delete_branch=delete_branch)
        return await self._remove(run, sb, reason, delete_branch=delete_branch)

    async def _remove(
        self, run: dict[str, Any], sb: Sandbox, reason: str, *, delete_branch: bool
    ) -> Removed:
        async with self._lock:
            keep = not delete_branch and await asyncio.to_thread(has_own_commits, sb)
            await asyncio.to_thread(remove_sandbox, sb, delete_branch=not keep)
        gone = Removed(sb.run_id, reason, sb.branch, keep and sb.branch is not None)
        await self.runs.emit(run["id"], "worktree.removed", gone.to_json())
        log.info("removed the sandbox of run %s (%s)", sb.run_id, reason)
        return gone
