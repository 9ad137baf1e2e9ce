"""The FastAPI application: routes over the core and the one JSON error shape."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from kyros import API_VERSION, __version__
from kyros.core.app import Core
from kyros.daemon.routes import health, misc, runs
from kyros.errors import KyrosError

log = logging.getLogger("kyros.daemon")

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 400: "bad_request"}


def _error(status: int, code: str, message: str, detail: Any = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, "detail": detail}}, status)


def _clean_validation(errors: list[Any]) -> list[dict[str, Any]]:
    # Never echo inputs back: a 1 MB goal or a secret would travel back in the error.
    return [
        {
            "loc": [str(p) for p in err.get("loc", ())],
            "msg": str(err.get("msg", "")),
            "type": str(err.get("type", "")),
        }
        for err in errors[:20]
    ]


def create_app(core: Core) -> FastAPI:
    """The API over ``core``. Security (Host, Origin, token, body size) is the Guard's job."""
    app = FastAPI(
        title="kyros daemon",
        version=__version__,
        summary=f"kyros daemon API v{API_VERSION}",
        docs_url=None,  # the docs page loads scripts from a CDN; the OpenAPI JSON is enough
        redoc_url=None,
    )
    app.state.core = core

    @app.exception_handler(KyrosError)
    async def _kyros_error(_: Request, exc: KyrosError) -> JSONResponse:
        if exc.http_status >= 500:
            log.error("%s: %s", exc.code, exc.message)
        return _error(exc.http_status, exc.code, exc.message, exc.detail)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _clean_validation(list(exc.errors()))
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        where = ".".join(p for p in first["loc"] if p != "body") or "request"
        return _error(422, "invalid_input", f"{where}: {first['msg']}", errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return _error(exc.status_code, code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _crash(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error in a request")
        return _error(500, "internal", f"internal error ({type(exc).__name__}); see the daemon log")

    app.include_router(health.router)
    app.include_router(runs.router)
    app.include_router(misc.router)
    return app
