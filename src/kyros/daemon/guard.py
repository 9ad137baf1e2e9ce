"""The ASGI guard in front of every route and WebSocket (RELIABILITY S2-S5).

It runs before routing, so a refused request never reaches a handler: a malformed ``Host`` or
two of them → 400 (:mod:`kyros.hosts` parses it once, exactly); a foreign ``Host`` (DNS
rebinding) or any ``Origin`` not explicitly allowed (a browser page) → 403; over TCP a
missing or wrong bearer token → 401; a body over the limit → 413. CORS middleware would not
help: it does not run on WebSocket handshakes and it only advises browsers.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from kyros import API_VERSION
from kyros.hosts import MalformedHost, canonical_name, parse_host

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

DEFAULT_MAX_BODY = 1024 * 1024
LOCAL_HOSTS = frozenset({"kyros", "localhost", "127.0.0.1", "::1"})


class BodyTooLarge(Exception):
    pass


def allowed_names(names: Iterable[str]) -> frozenset[str]:
    """``names`` in the canonical form :func:`~kyros.hosts.parse_host` gives a ``Host``."""
    return frozenset(canonical_name(n) for n in names)


def _headers(scope: Scope) -> tuple[dict[str, str], int]:
    """The request's headers by lower-case name (the first of each), and how many ``Host``
    headers it has: two mean a proxy and a server may each read a different one."""
    headers: dict[str, str] = {}
    hosts = 0
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.decode("latin-1").lower()
        if name == "host":
            hosts += 1
        headers.setdefault(name, raw_value.decode("latin-1"))
    return headers, hosts


class Guard:
    """Wraps the app for one listener. ``verify`` is None on the Unix socket (the socket's
    0600 mode is the credential there)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        verify: Callable[[str], bool] | None,
        allowed_hosts: frozenset[str] = LOCAL_HOSTS,
        allowed_origins: frozenset[str] = frozenset(),
        max_body: int = DEFAULT_MAX_BODY,
    ) -> None:
        self.app = app
        self.verify = verify
        self.allowed_hosts = allowed_names(allowed_hosts)
        self.allowed_origins = allowed_origins
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers, host_count = _headers(scope)
        host = headers.get("host")
        if host_count > 1:
            await _refuse(scope, send, 400, "bad_request", "a request may have one Host header")
            return
        try:
            name = parse_host(host)[0] if host is not None else None
        except MalformedHost:
            await _refuse(scope, send, 400, "bad_request", "malformed Host header")
            return
        if name is None or name not in self.allowed_hosts:
            await _refuse(
                scope,
                send,
                403,
                "forbidden_host",
                "this Host is not served here (DNS rebinding protection)",
            )
            return
        origin = headers.get("origin")
        if origin is not None and origin not in self.allowed_origins:
            await _refuse(
                scope,
                send,
                403,
                "forbidden_origin",
                "requests from web pages are refused; kyros has no browser clients",
            )
            return
        if self.verify is not None:
            auth = headers.get("authorization", "")
            scheme, _, token = auth.partition(" ")
            if scheme.lower() != "bearer" or not self.verify(token.strip()):
                await _refuse(
                    scope,
                    send,
                    401,
                    "unauthorized",
                    "a valid bearer token is required (see `kyros daemon token`)",
                )
                return
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            await self._too_large(scope, send)
            return
        await self._guarded_body(scope, receive, send)

    async def _guarded_body(self, scope: Scope, receive: Receive, send: Send) -> None:
        seen = 0
        started = False
        answered = False

        async def limited_receive() -> Message:
            nonlocal seen, answered
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    if started:
                        raise BodyTooLarge
                    # A chunked body has no length to refuse up front. Answer 413 here and
                    # tell the app the client left: raising instead would reach the app's body
                    # parser, which turns any exception into its own 400.
                    await self._too_large(scope, send)
                    answered = True
                    return {"type": "http.disconnect"}
            return message

        async def tagged_send(message: Message) -> None:
            nonlocal started
            if answered:
                return  # the 413 is the answer; what the app says after it goes nowhere
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-kyros-api-version", API_VERSION.encode()),
                ]
            await send(message)

        try:
            await self.app(scope, limited_receive, tagged_send)
        except BodyTooLarge:
            if not started and not answered:
                await self._too_large(scope, send)
        except Exception:
            if not answered:
                raise

    async def _too_large(self, scope: Scope, send: Send) -> None:
        await _refuse(
            scope,
            send,
            413,
            "payload_too_large",
            f"request bodies are limited to {self.max_body} bytes",
        )


async def _refuse(scope: Scope, send: Send, status: int, code: str, message: str) -> None:
    if scope["type"] == "websocket":
        # Closing before accept makes the server answer the handshake with HTTP 403.
        await send({"type": "websocket.close", "code": 1008, "reason": code})
        return
    body = json.dumps({"error": {"code": code, "message": message, "detail": None}}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"x-kyros-api-version", API_VERSION.encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
