"""Worktrees of finished runs: removing them in bulk (`kyros runs clean`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from kyros.core.app import Core
from kyros.daemon.routes.deps import core
from kyros.protocol import WorktreeClean, WorktreesCleaned

router = APIRouter(prefix="/v1/worktrees", tags=["runs"])


@router.post("/clean", response_model=WorktreesCleaned)
async def clean_worktrees(
    body: WorktreeClean, c: Annotated[Core, Depends(core)]
) -> WorktreesCleaned:
    """Remove the worktree (or copy) of every run that ended at least ``older_than_seconds``
    ago; runs still active, and the worktrees their revisions use, are left alone. Diffs stay
    in the store; a branch the run committed on is kept."""
    removed = await c.worktrees.clean(body.older_than_seconds)
    return WorktreesCleaned.model_validate({"removed": removed})
