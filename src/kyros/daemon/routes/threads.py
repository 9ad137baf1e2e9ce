"""Conversations: the threads runs share, with their runs and messages."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from kyros.core.app import Core
from kyros.daemon.routes.deps import core
from kyros.protocol import Thread, ThreadDetail, ThreadList

router = APIRouter(prefix="/v1/threads", tags=["threads"])

ThreadRef = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


@router.get("", response_model=ThreadList)
async def list_threads(
    c: Annotated[Core, Depends(core)],
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> ThreadList:
    """Conversations, the most recently active first, each with its runs."""
    found = await c.threads.list(limit=limit)
    return ThreadList(threads=[Thread.model_validate(t) for t in found])


@router.get("/{ref}", response_model=ThreadDetail)
async def show_thread(ref: ThreadRef, c: Annotated[Core, Depends(core)]) -> ThreadDetail:
    """One conversation — by its id or the id of one of its runs — with its runs and
    messages (summaries included; the originals are never removed)."""
    return ThreadDetail.model_validate(await c.threads.show(ref))
