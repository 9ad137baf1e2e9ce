"""A scripted OpenAI-compatible HTTP server for tests.

`FakeOpenAI` speaks plain HTTP/1.1 on 127.0.0.1 (an ephemeral port) from a
background thread running its own asyncio loop, so real clients (httpx, the
openai SDK, litellm) can talk to it exactly as they would to the real API:

    with FakeOpenAI() as srv:
        srv.enqueue(Reply(text="hello"), Reply(status=429, headers={"Retry-After": "2"}))
        await litellm.acompletion(model="openai/fake-model", api_base=srv.url, ...)

Each `POST /v1/chat/completions` pops the next `Reply` from a FIFO (or uses
`srv.default` when the queue is empty). A `Reply` describes both the content
(text, tool calls, token counts) and the faults to inject (error statuses,
stalls, slow drip, truncated bodies, malformed chunks). Every request is
recorded in `srv.requests`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

_POLL = 0.02  # how often waits check for a vanished client
_KEEPALIVE_EVERY = 0.2
_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    404: ("invalid_request_error", "not_found"),
    429: ("requests", "rate_limit_exceeded"),
}


@dataclass
class Reply:
    """One scripted response; the defaults give a well-behaved reply.

    Content: `text` is streamed `chunk_size` characters per chunk; each tool call
    (`{"id", "name", "arguments"}`, arguments a JSON string) is streamed as one
    delta carrying id and name, then argument deltas of `chunk_size` characters.
    Token counts default to roughly len/4 of the messages and of the output.

    Faults (all delays in seconds):
    - `status` != 200 sends `body` (OpenAI's error shape when None) and `headers`.
    - `delay_before_headers`: silence before the status line.
    - `delay_first_chunk`: headers sent, then silence before the first chunk.
    - `delay_between_chunks`: gap before every chunk after the first.
    - `stall_after_chunks`: send that many `data:` events, then hang until the
      client disconnects or the server stops.
    - `keepalive_comments`: during any silence after the headers, send a
      `: keep-alive` comment every 0.2 s.
    - `cut_after_bytes`: close the connection after that many body bytes (SSE
      text for streams, JSON for the rest), leaving the response incomplete.
    - `bad_json`: an unparseable `data:` event right after the role chunk.
    """

    text: str = ""
    tool_calls: list[dict[str, Any]] | None = None  # [{"id", "name", "arguments": "<json>"}]
    chunk_size: int = 8
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    #: A cost the provider reports in its usage (USD, as OpenRouter and some gateways do).
    cost: float | None = None
    # Fault injection.
    status: int = 200
    body: dict[str, Any] | str | None = None  # error body; OpenAI's shape when None
    headers: dict[str, str] = field(default_factory=dict)
    delay_before_headers: float = 0.0
    delay_first_chunk: float = 0.0
    delay_between_chunks: float = 0.0
    stall_after_chunks: int | None = None
    keepalive_comments: bool = False
    cut_after_bytes: int | None = None
    bad_json: bool = False

    @classmethod
    def silent(cls) -> Reply:
        """Accept the request and never answer it (no status line, ever)."""
        return cls(text="never sent", delay_before_headers=float("inf"))

    @classmethod
    def error(cls, status: int, message: str | None = None, **kw: Any) -> Reply:
        """An error reply whose body is OpenAI's `{"error": {...}}` shape."""
        err_type, code = _ERROR_TYPES.get(status, ("server_error", None))
        msg = message or HTTPStatus(status).phrase
        body = {"error": {"message": msg, "type": err_type, "param": None, "code": code}}
        return cls(status=status, body=body, **kw)


@dataclass
class RecordedRequest:
    """One request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]  # lower-case keys
    body: Any  # parsed JSON, or None when the body was empty or not JSON
    at: float = field(default_factory=time.monotonic)  # when it arrived


class _ClientGone(Exception):
    """The client closed the connection while we were waiting or writing."""


class FakeOpenAI:
    """Scripted OpenAI-compatible server; see the module docstring."""

    def __init__(self, default: Reply | None = None, models: list[str] | None = None) -> None:
        self.default = default or Reply(text="ok")
        self.models = models or ["fake-model"]
        self.requests: list[RecordedRequest] = []
        self.port = 0
        self._queue: list[Reply] = []
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._conns: set[asyncio.Task[None]] = set()

    # -- public API ---------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL including `/v1`, suitable as an OpenAI/litellm `api_base`."""
        return f"http://127.0.0.1:{self.port}/v1"

    def enqueue(self, *replies: Reply) -> None:
        with self._cond:
            self._queue.extend(replies)

    def clear_queue(self) -> int:
        """Drop the replies not used yet; returns how many there were."""
        with self._cond:
            left, self._queue = len(self._queue), []
        return left

    def wait_for_requests(self, n: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """Block until at least `n` requests arrived; raise TimeoutError otherwise.

        This blocks the calling thread; from async code use `await_requests`.
        """
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.requests) >= n, timeout):
                raise TimeoutError(f"expected {n} requests, got {len(self.requests)}")
            return list(self.requests)

    async def await_requests(self, n: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """Async twin of `wait_for_requests` that keeps the caller's loop running."""
        deadline = time.monotonic() + timeout
        while len(self.requests) < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"expected {n} requests, got {len(self.requests)}")
            await asyncio.sleep(_POLL)
        return list(self.requests)

    @property
    def open_connections(self) -> int:
        """Client connections currently open (0 once clients have hung up)."""
        return len(self._conns)

    def start(self) -> FakeOpenAI:
        if self._thread is not None:
            raise RuntimeError("FakeOpenAI already started")
        self._thread = threading.Thread(target=self._run, name="fake-openai", daemon=True)
        self._thread.start()
        self._ready.wait(5)
        if self._startup_error is not None or not self.port:
            self.stop()
            raise RuntimeError("FakeOpenAI failed to start") from self._startup_error
        return self

    def stop(self) -> None:
        """Stop serving, end any stalled responses and join the thread."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        if self._loop is not None and self._stop_event is not None:
            with contextlib.suppress(RuntimeError):  # loop already closed
                self._loop.call_soon_threadsafe(self._stop_event.set)
        thread.join(5)
        if thread.is_alive():
            raise RuntimeError("FakeOpenAI thread did not stop")

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- server plumbing ----------------------------------------------------

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:
            self._startup_error = exc
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            self._ready.set()

    async def _serve(self) -> None:
        self._stop_event = asyncio.Event()
        server = await asyncio.start_server(self._spawn, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            await self._stop_event.wait()
        finally:
            server.close()
            for task in list(self._conns):
                task.cancel()
            await asyncio.gather(*self._conns, return_exceptions=True)
            await server.wait_closed()

    def _spawn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Own the connection tasks (rather than letting start_server wrap a coroutine)
        # so that cancelling them at stop() is not reported as an unhandled error.
        task = asyncio.get_running_loop().create_task(self._on_connect(reader, writer))
        self._conns.add(task)
        task.add_done_callback(self._conns.discard)

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await self._handle_one(reader, writer):
                pass
        except (
            _ClientGone,
            ConnectionError,
            ValueError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
        ):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await writer.wait_closed()

    async def _handle_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one request; return whether the connection may be reused."""
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, path, _version = request_line.split(" ", 2)
        headers = {}
        for line in filter(None, header_lines):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        raw = await reader.readexactly(int(headers.get("content-length", "0")))
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        path = path.split("?", 1)[0]
        reply = None
        with self._cond:
            if method == "POST" and path == "/v1/chat/completions":
                reply = self._queue.pop(0) if self._queue else self.default
            self.requests.append(RecordedRequest(method, path, headers, body))
            self._cond.notify_all()
        keep = headers.get("connection", "").lower() != "close"

        if method == "GET" and path == "/v1/models":
            models = [
                {"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in self.models
            ]
            return await self._send_json(writer, 200, {"object": "list", "data": models}) and keep
        if reply is None:
            err = Reply.error(404, f"Unknown path {method} {path}")
            return await self._send_json(writer, 404, err.body) and keep
        await self._wait(reader, reply.delay_before_headers)
        if reply.status != 200:
            body = reply.body if reply.body is not None else Reply.error(reply.status).body
            return await self._send_json(writer, reply.status, body, reply) and keep
        request = body if isinstance(body, dict) else {}
        if request.get("stream"):
            return await self._stream(reader, writer, reply, request) and keep
        return await self._send_json(writer, 200, _completion(reply, request), reply) and keep

    async def _send_json(
        self, writer: asyncio.StreamWriter, status: int, body: Any, reply: Reply | None = None
    ) -> bool:
        payload = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        extra = reply.headers if reply else {}
        writer.write(
            _head(
                status,
                {"Content-Type": "application/json", "Content-Length": str(len(payload)), **extra},
            )
        )
        cut = reply.cut_after_bytes if reply else None
        writer.write(payload if cut is None else payload[:cut])
        await writer.drain()
        return cut is None

    async def _stream(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        reply: Reply,
        request: dict[str, Any],
    ) -> bool:
        writer.write(
            _head(
                200,
                {
                    "Content-Type": "text/event-stream; charset=utf-8",
                    "Cache-Control": "no-cache",
                    "Transfer-Encoding": "chunked",
                    **reply.headers,
                },
            )
        )
        await writer.drain()
        sent_bytes = 0

        async def send(data: bytes) -> None:
            nonlocal sent_bytes
            cut = reply.cut_after_bytes
            if cut is not None and sent_bytes + len(data) >= cut:
                data = data[: cut - sent_bytes]
                writer.write(b"%x\r\n%s\r\n" % (len(data), data) if data else b"")
                await writer.drain()
                raise _ClientGone  # close without the terminating chunk
            sent_bytes += len(data)
            writer.write(b"%x\r\n%s\r\n" % (len(data), data))
            await writer.drain()

        async def pause(seconds: float) -> None:
            deadline = time.monotonic() + seconds
            while (left := deadline - time.monotonic()) > 0:
                step = min(left, _KEEPALIVE_EVERY)
                await self._wait(reader, step)
                if reply.keepalive_comments and step >= _KEEPALIVE_EVERY:
                    await send(b": keep-alive\n\n")

        await pause(reply.delay_first_chunk)
        for n, event in enumerate(_events(reply, request)):
            if reply.stall_after_chunks is not None and n >= reply.stall_after_chunks:
                await pause(float("inf"))
            if n and event != "[DONE]":
                await pause(reply.delay_between_chunks)
            await send(f"data: {event}\n\n".encode())
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True

    async def _wait(self, reader: asyncio.StreamReader, seconds: float) -> None:
        """Sleep, but raise `_ClientGone` as soon as the client hangs up."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if reader.at_eof():
                raise _ClientGone
            await asyncio.sleep(min(left, _POLL))


class Unreachable:
    """A port on 127.0.0.1 whose connections never complete: for connect deadlines.

    A listening socket with a backlog of 0 that never accepts, its one queue slot taken: the
    kernel drops every further SYN, so a client's connect hangs as it would towards a host that
    does not answer.
    """

    def __init__(self) -> None:
        self._server = socket.socket()
        self._filler = socket.socket()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.getsockname()[1]}/v1"

    def __enter__(self) -> Unreachable:
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(0)
        self._filler.connect(self._server.getsockname())
        return self

    def __exit__(self, *exc: object) -> None:
        self._filler.close()
        self._server.close()


def _head(status: int, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _usage(reply: Reply, request: dict[str, Any]) -> dict[str, Any]:
    prompt = reply.prompt_tokens
    if prompt is None:
        prompt = max(1, len(json.dumps(request.get("messages", []))) // 4)
    completion = reply.completion_tokens
    if completion is None:
        args = "".join(c["name"] + c["arguments"] for c in reply.tool_calls or [])
        completion = max(1, (len(reply.text) + len(args)) // 4)
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if reply.cost is not None:
        usage["cost"] = reply.cost
    return usage


def _finish_reason(reply: Reply) -> str:
    return "tool_calls" if reply.tool_calls else "stop"


def _completion(reply: Reply, request: dict[str, Any]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.text or None, "refusal": None}
    if reply.tool_calls:
        message["tool_calls"] = [
            {
                "id": c["id"],
                "type": "function",
                "function": {"name": c["name"], "arguments": c["arguments"]},
            }
            for c in reply.tool_calls
        ]
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.get("model", "fake-model"),
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": _finish_reason(reply),
            }
        ],
        "usage": _usage(reply, request),
    }


def _pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def _events(reply: Reply, request: dict[str, Any]) -> list[str]:
    """The `data:` payloads of one streamed completion, in order."""
    include_usage = bool((request.get("stream_options") or {}).get("include_usage"))
    base = {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": request.get("model", "fake-model"),
    }
    if include_usage:
        base["usage"] = None

    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return json.dumps({**base, "choices": [choice]})

    size = max(1, reply.chunk_size)
    out = [chunk({"role": "assistant", "content": "" if reply.text else None})]
    if reply.bad_json:
        out.append('{"id": "broken", "choices": [{"delta": {"content": "x"')
    out += [chunk({"content": piece}) for piece in _pieces(reply.text, size)]
    for index, call in enumerate(reply.tool_calls or []):
        out.append(
            chunk(
                {
                    "tool_calls": [
                        {
                            "index": index,
                            "id": call["id"],
                            "type": "function",
                            "function": {"name": call["name"], "arguments": ""},
                        }
                    ]
                }
            )
        )
        args = call["arguments"]
        out += [
            chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
            for piece in _pieces(args, size)
        ]
    out.append(chunk({}, _finish_reason(reply)))
    if include_usage:
        out.append(json.dumps({**base, "choices": [], "usage": _usage(reply, request)}))
    out.append("[DONE]")
    return out
