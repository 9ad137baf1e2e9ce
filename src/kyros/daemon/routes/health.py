"""Liveness and readiness."""

from __future__ import annotations

import os
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from kyros import API_VERSION, __version__
from kyros.core.app import Core
from kyros.daemon.routes.deps import core
from kyros.protocol import Health, Ready

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz(request: Request) -> Health:
    """The process answers (and its TCP listener's names, its node id and role). Cheap:
    touches nothing else."""
    tcp = getattr(request.app.state, "tcp", None)
    nodes = request.app.state.core.nodes
    return Health(
        status="ok",
        version=__version__,
        api_version=API_VERSION,
        pid=os.getpid(),
        tcp=tcp,
        node=nodes.node_id,
        role=nodes.role,
    )


@router.get("/readyz", response_model=Ready, responses={503: {"model": Ready}})
async def readyz(c: Annotated[Core, Depends(core)]) -> JSONResponse:
    """Store reachable, migrations current, workers running."""
    checks = await c.readiness()
    ready = all(check["ok"] for check in checks.values())
    body = Ready(ready=ready, checks=checks)  # type: ignore[arg-type]
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)
