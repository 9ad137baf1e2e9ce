"""Shared route dependencies."""

from __future__ import annotations

from fastapi import Request

from kyros.core.app import Core


def core(request: Request) -> Core:
    return request.app.state.core  # type: ignore[no-any-return]
