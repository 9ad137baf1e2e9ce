"""The FastAPI application: routes over the core and the one JSON error shape."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

from kyros import API_VERSION, __version__
from kyros.core.app import Core
from kyros.daemon.routes import (
    agents,
    health,
    misc,
    models,
    registry,
    runs,
    terminals,
    threads,
    usage,
    worktrees,
)
from kyros.errors import KyrosError

log = logging.getLogger("kyros.daemon")

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 400: "bad_request"}


def _error(
    status: int, code: str, message: str, detail: Any = None, hint: str | None = None
) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message, "detail": detail}
    if hint is not None:
        body["hint"] = hint  # the next command to try (ADR 0018)
    return JSONResponse({"error": body}, status)


def _kyros_error_response(exc: KyrosError) -> JSONResponse:
    if exc.http_status >= 500:
        log.error("%s: %s", exc.code, exc.message)
    return _error(exc.http_status, exc.code, exc.message, exc.detail, exc.hint)


def _crash_response(exc: Exception) -> JSONResponse:
    log.exception("unhandled error in a request", exc_info=exc)
    return _error(500, "internal", f"internal error ({type(exc).__name__}); see the daemon log")


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
        return _kyros_error_response(exc)

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
        return _crash_response(exc)

    app.include_router(health.router)
    app.include_router(registry.router)
    if core.nodes.role == "worker":
        # A worker serves only what other nodes and operators need of it (docs/cluster.md):
        # health, readiness and the registry. Any other path says where to go instead.
        @app.api_route(
            "/{path:path}",
            methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            include_in_schema=False,
        )
        async def _not_on_workers(path: str) -> JSONResponse:
            return _error(
                404,
                "worker_node",
                f"/{path} is not served here: node {core.nodes.node_id} is a worker (it runs "
                "jobs and serves only /healthz, /readyz and /v1/registry); send requests to an "
                "api or all node",
            )

        return app
    app.include_router(runs.router)
    app.include_router(misc.router)
    app.include_router(agents.router)
    app.include_router(terminals.router)
    app.include_router(usage.router)
    app.include_router(models.router)
    app.include_router(threads.router)
    app.include_router(worktrees.router)
    return app


class HotReads:
    """The daemon's ASGI app: FastAPI, with ``GET /v1/runs/{run_id}`` answered in front of it.

    Clients poll that route, and FastAPI's per-request middleware, routing and dependency
    solving cost several times the read itself. Here the path is matched as FastAPI's route
    matches it (one segment after the prefix) and answered by the route's own code
    (:func:`runs.run_json`), with the same headers and the same error responses; every other
    request goes to FastAPI, which also still describes the route in the OpenAPI document. The
    :class:`~kyros.daemon.guard.Guard` wraps this app, so its checks run first.
    """

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.state = app.state
        self.siblings = _run_path_siblings(app)
        # A worker serves no runs (create_app): its catch-all answers instead.
        self.fast = app.state.core.nodes.role != "worker"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.fast and scope["type"] == "http" and scope["method"] == "GET":
            path: str = scope["path"]
            if path.startswith(runs.RUN_PATH_PREFIX) and path not in self.siblings:
                run_id = path[len(runs.RUN_PATH_PREFIX) :]
                if run_id and "/" not in run_id:
                    await self._get_run(run_id, scope, receive, send)
                    return
        await self.app(scope, receive, send)

    async def _get_run(self, run_id: str, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            body = await runs.run_json(self.state.core, run_id)
        except KyrosError as exc:
            await _kyros_error_response(exc)(scope, receive, send)
            return
        except Exception as exc:
            await _crash_response(exc)(scope, receive, send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-length", str(len(body)).encode()),
                    (b"content-type", b"application/json"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _run_path_siblings(app: FastAPI) -> frozenset[str]:
    """The literal paths of other ``GET`` routes with one segment after the runs prefix (they
    stay FastAPI's). Another route with a parameter there would be shadowed: refused."""
    literal = set()
    for route in app.routes:
        path: str = getattr(route, "path", "")
        methods = getattr(route, "methods", None) or ()
        rest = path[len(runs.RUN_PATH_PREFIX) :]
        if (
            "GET" not in methods
            or not path.startswith(runs.RUN_PATH_PREFIX)
            or "/" in rest
            or getattr(route, "endpoint", None) is runs.get_run
        ):
            continue
        if "{" in rest:
            raise RuntimeError(f"GET {path} would be shadowed by the fast GET /v1/runs/{{run_id}}")
        literal.add(path)
    return frozenset(literal)
