"""Shared route dependencies."""

from __future__ import annotations

from fastapi import Request

from kyros.core.app import Core


async def core(request: Request) -> Core:
    # async on purpose: FastAPI runs plain `def` dependencies in a thread pool, one hop per
    # request.
    return request.app.state.core  # type: ignore[no-any-return]
