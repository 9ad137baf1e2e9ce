"""Jobs and configuration."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from kyros.core.app import Core
from kyros.daemon.routes.deps import core
from kyros.protocol import (
    ConfigEntry,
    ConfigView,
    DaemonView,
    Job,
    JobList,
)
from kyros.statuses import JobStatus

router = APIRouter(prefix="/v1", tags=["daemon"])


@router.get("/jobs", response_model=JobList)
async def list_jobs(
    c: Annotated[Core, Depends(core)],
    status: JobStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> JobList:
    """Jobs on the durable queue, newest first."""
    rows = await c.jobs(limit=limit, status=status.value if status else None)
    return JobList(jobs=[Job.model_validate(r) for r in rows])


@router.get("/config", response_model=ConfigView)
async def config(c: Annotated[Core, Depends(core)]) -> ConfigView:
    """The daemon's effective settings and where each came from; secrets redacted. The config
    file is re-read when it changed; a changed setting read only at start shows ``pending``."""
    return ConfigView(entries=[ConfigEntry.model_validate(e) for e in c.live.entries()])


@router.get("/daemon", response_model=DaemonView)
async def daemon(c: Annotated[Core, Depends(core)]) -> DaemonView:
    """This daemon: pid, start time, whether a client started it and whether it is idle, its
    config file, and a keyed fingerprint of each provider key it holds (never a key)."""
    return DaemonView.model_validate(await c.daemon_view())
