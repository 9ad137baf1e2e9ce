"""The one module that imports litellm (~3 s and ~220 MB; see STACK-NOTES).

It also hosts :class:`ScriptedProvider`, a litellm ``CustomLLM`` that answers from a Python
function: the ``demo`` model uses it with :func:`kyros.core.ai.demo.reply`, tests with queued
replies. Both go through litellm's real streaming path, so they exercise the same code as a
provider does.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

# litellm fetches its price map from the internet at import unless told not to (5 s timeout).
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("LITELLM_OFFLINE_MODE", "true")

import aiohttp
import litellm
import litellm.exceptions as llm_errors
from litellm.llms.custom_llm import CustomLLM
from litellm.types.utils import GenericStreamingChunk

from kyros.core.ai.backend import (
    LISTED,
    REPORTED,
    UNKNOWN,
    ChatRequest,
    Completion,
    ModelInfo,
    OnDelta,
    ProviderError,
    ToolCall,
)
from kyros.redaction import Redactor

litellm.suppress_debug_info = True  # no "Give Feedback" banner on stdout
litellm.telemetry = False
# kyros counts tokens from the provider's usage (or its own estimate) and prices them itself;
# litellm's own counting (for streams without usage) loads a tokenizer (~40 MB) and costs CPU.
litellm.disable_token_counter = True

DEFAULT_CONTEXT_WINDOW = 8192
log = logging.getLogger("kyros.ai")
SCRIPTED_PREFIX = "kyros-scripted"

#: A scripted answer: text, or ``{"text": ..., "tool_calls": [{"id", "name", "arguments"}]}``
#: where ``arguments`` is a JSON string.
Scripted = str | dict[str, Any]
Reply = Callable[[list[dict[str, Any]]], Scripted]


def _split(answer: Scripted) -> tuple[str, list[dict[str, Any]]]:
    if isinstance(answer, str):
        return answer, []
    return str(answer.get("text") or ""), list(answer.get("tool_calls") or [])


class ScriptedProvider(CustomLLM):  # type: ignore[misc]  # litellm is untyped here
    """Answers with ``reply(messages)``, streamed in small chunks with optional pacing."""

    def __init__(self, reply: Reply, *, chunk_chars: int = 24, delay: float = 0.0) -> None:
        super().__init__()
        self.reply = reply
        self.chunk_chars = chunk_chars
        self.delay = delay

    async def acompletion(self, *args: Any, **kwargs: Any) -> Any:
        messages = kwargs.get("messages") or []
        text, calls = _split(self.reply(messages))
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if calls:
            message["tool_calls"] = [
                {
                    "id": c["id"],
                    "type": "function",
                    "function": {"name": c["name"], "arguments": c["arguments"]},
                }
                for c in calls
            ]
        return litellm.ModelResponse(
            choices=[{"message": message, "finish_reason": "tool_calls" if calls else "stop"}],
            usage={
                "prompt_tokens": _estimate(messages),
                "completion_tokens": max(1, len(text) // 4),
                "total_tokens": _estimate(messages) + max(1, len(text) // 4),
            },
        )

    async def astreaming(  # type: ignore[override]  # litellm passes everything by keyword
        self, *args: Any, **kwargs: Any
    ) -> AsyncIterator[GenericStreamingChunk]:
        messages = kwargs.get("messages") or []
        text, calls = _split(self.reply(messages))
        pieces = [text[i : i + self.chunk_chars] for i in range(0, len(text), self.chunk_chars)]
        for piece in pieces:
            if self.delay:
                await asyncio.sleep(self.delay)
            yield {
                "text": piece,
                "is_finished": False,
                "finish_reason": "",
                "usage": None,
                "index": 0,
                "tool_use": None,
            }
        for index, call in enumerate(calls):
            yield {
                "text": "",
                "is_finished": False,
                "finish_reason": "",
                "usage": None,
                "index": 0,
                "tool_use": {
                    "id": call["id"],
                    "type": "function",
                    "function": {"name": call["name"], "arguments": call["arguments"]},
                    "index": index,
                },
            }
        prompt_tokens = _estimate(messages)
        completion_tokens = max(1, (len(text) + sum(len(c["arguments"]) for c in calls)) // 4)
        yield {
            "text": "",
            "is_finished": True,
            "finish_reason": "tool_calls" if calls else "stop",
            "index": 0,
            "tool_use": None,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }


def _estimate(messages: list[dict[str, Any]]) -> int:
    return max(1, sum(len(str(m.get("content", ""))) for m in messages) // 4)


def register_scripted(name: str, provider: ScriptedProvider) -> str:
    """Make ``provider`` answer model ``kyros-scripted/<name>``; returns that model id."""
    entry: Any = {"provider": f"{SCRIPTED_PREFIX}-{name}", "custom_handler": provider}
    litellm.custom_provider_map = [
        e for e in litellm.custom_provider_map if e["provider"] != entry["provider"]
    ] + [entry]
    # litellm reads the map into its provider list when a call is routed.
    from litellm.utils import custom_llm_setup

    custom_llm_setup()  # type: ignore[no-untyped-call]
    return f"{entry['provider']}/{name}"


def _retry_after(exc: BaseException) -> float | None:
    """The provider's ``Retry-After`` in seconds (delta form; HTTP dates are rare from APIs)."""
    headers = getattr(exc, "litellm_response_headers", None) or getattr(
        getattr(exc, "response", None), "headers", None
    )
    if not headers:
        return None
    for name in ("retry-after-ms", "retry-after"):
        raw = headers.get(name)
        if raw is None:
            continue
        try:
            value = float(raw)
        except ValueError:
            continue
        return value / 1000 if name == "retry-after-ms" else value
    return None


#: The library's own words in its errors' text: class names ("litellm.InternalServerError:
#: InternalServerError: OpenAIException - ") and advice to programmers ("Handle with
#: `litellm.InternalServerError`"), which mean nothing to a user of kyros.
_LIBRARY_WORDS = (
    re.compile(r"litellm\.\w+(?:Error|Exception)\s*:\s*"),
    re.compile(r"\b\w+(?:Error|Exception)\s*:\s*"),
    re.compile(r"\b\w+Exception\s+-\s+"),
    re.compile(r"\s*Handle with `[^`]*`\.?"),
    re.compile(r"\s*Received Model Group=.*"),
)


def plain_words(text: str) -> str:
    """A provider error's text without the library's class names and advice."""
    for pattern in _LIBRARY_WORDS:
        text = pattern.sub("", text)
    text = text.strip(" .:-")
    return text or "no explanation"


def _classify(exc: BaseException, redact: Redactor, phase: str, where: str = "") -> ProviderError:
    # Providers echo request details (sometimes the key) in errors; this text reaches events.
    raw = redact(str(exc).splitlines()[0][:500]) if str(exc) else type(exc).__name__
    text = plain_words(raw) + where
    if "LLM Provider NOT provided" in raw:  # litellm's words for a prefix it does not know
        return ProviderError(
            f"no provider is known by the prefix of this model's name{where}: name it as "
            "PROVIDER/NAME (openai/gpt-4.1-mini, anthropic/claude-sonnet-4-5); "
            "`kyros models list` shows the models kyros can use",
            kind="bad_request",
        )
    if isinstance(exc, llm_errors.MidStreamFallbackError):
        return ProviderError(f"the answer stopped mid-stream: {text}", kind="cut")
    if isinstance(exc, llm_errors.RateLimitError):
        return ProviderError(
            f"the provider is rate-limiting requests: {text}",
            kind="rate_limit",
            retry_after=_retry_after(exc),
        )
    if isinstance(exc, llm_errors.Timeout):
        return ProviderError(
            f"the provider did not answer in time ({phase.replace('_', ' ')}): {text}",
            kind="timeout",
            phase=phase,
        )
    pairs: list[tuple[type[BaseException], str, str]] = [
        (llm_errors.AuthenticationError, "auth", "the provider rejected the credentials"),
        (llm_errors.PermissionDeniedError, "auth", "the provider refused access"),
        (
            llm_errors.ContextWindowExceededError,
            "context_overflow",
            "the prompt is too long for the model",
        ),
        (llm_errors.NotFoundError, "bad_request", "the provider does not know this model"),
        (llm_errors.BadRequestError, "bad_request", "the provider refused the request"),
        (llm_errors.APIConnectionError, "provider", "could not reach the provider"),
    ]
    for cls, kind, words in pairs:
        if isinstance(exc, cls):
            return ProviderError(f"{words}: {text}", kind=kind)
    if "connection error" in text.lower():  # the OpenAI SDK's refused or reset connection
        return ProviderError(f"could not reach the provider: {text}", kind="provider")
    return ProviderError(f"the provider failed: {text}", kind="provider")


def _merge_tool_delta(calls: dict[int, dict[str, str]], piece: Any) -> None:
    """Tool calls stream as fragments keyed by index: id and name first, arguments in parts."""
    index = int(getattr(piece, "index", 0) or 0)
    call = calls.setdefault(index, {"id": "", "name": "", "arguments": ""})
    if getattr(piece, "id", None):
        call["id"] = piece.id
    function = getattr(piece, "function", None)
    if function is not None:
        if getattr(function, "name", None):
            call["name"] = function.name
        if getattr(function, "arguments", None):
            call["arguments"] += function.arguments


class LiteLLMBackend:
    """The real backend: any provider litellm speaks, and any OpenAI-compatible ``api_base``."""

    def context_window(self, model: str) -> int:
        return self.model_info(model).context_window or DEFAULT_CONTEXT_WINDOW

    def model_info(self, model: str) -> ModelInfo:
        # Looked up once per model: the price list is local and fixed for the process, and
        # litellm's lookup walks it on every miss (~0.3 ms, twice per call: worst case, cost).
        info = _INFO_CACHE.get(model)
        if info is None:
            if len(_INFO_CACHE) >= _INFO_CACHE_MAX:
                _INFO_CACHE.clear()
            info = _INFO_CACHE[model] = _lookup_model_info(model)
        return info

    async def complete(self, request: ChatRequest, on_delta: OnDelta | None = None) -> Completion:
        started = time.perf_counter()
        kwargs: dict[str, Any] = {
            "model": request.model,
            "messages": request.messages,
            "stream": True,
            "stream_options": {"include_usage": True},
            # The SDK's own timeout is only a backstop: kyros's phased deadlines below decide.
            # It stays the same from call to call (see ChatRequest.backstop_timeout).
            "timeout": max(request.backstop_timeout, request.total_timeout + 5),
            "num_retries": 0,  # retries live in one layer only: kyros's router
        }
        if request.api_base:
            kwargs["api_base"] = request.api_base
        if request.api_key:
            kwargs["api_key"] = request.api_key
        if request.temperature is not None:
            kwargs["temperature"] = request.temperature
        if request.max_tokens is not None:
            kwargs["max_tokens"] = request.max_tokens
        if request.tools:
            kwargs["tools"] = request.tools
        calls: dict[int, dict[str, str]] = {}
        parts: list[str] = []
        usage: Any = None
        finish: str | None = None
        loop = asyncio.get_running_loop()
        total_at = loop.time() + request.total_timeout
        phase = "connect"
        limits = {
            "connect": request.connect_timeout,
            "first_token": request.first_token_timeout,
            "between_chunks": request.between_chunks_timeout,
        }
        # kyros's own connection pool, whose trace tells when the request went out.
        kwargs["shared_session"] = _session(loop)
        stream: Any = None
        watch = _Watch()
        watched = _WATCH.set(watch)
        try:
            # One timer, moved on at every phase change and every token: a deadline per phase
            # costs no task per chunk. Keep-alives and empty chunks never move it.
            async with asyncio.timeout_at(min(total_at, loop.time() + limits[phase])) as timer:

                def sent() -> None:
                    # The request is out on an open connection: from here the server is
                    # thinking, which the first-token deadline bounds (a server that accepts
                    # and never answers is given up on after it, not after the connect one).
                    nonlocal phase
                    if phase == "connect":
                        phase = "first_token"
                        timer.reschedule(min(total_at, loop.time() + limits[phase]))

                watch.on_sent = sent
                stream = await litellm.acompletion(**kwargs)
                if phase == "connect":
                    # A provider whose HTTP client kyros does not own: the response started,
                    # so the connection was made; the first token is due from here.
                    phase = "first_token"
                    timer.reschedule(min(total_at, loop.time() + limits[phase]))
                async for chunk in stream:
                    _forget_old_chunks(stream)
                    progressed = False
                    if getattr(chunk, "usage", None):
                        usage = chunk.usage
                    if chunk.choices:
                        choice = chunk.choices[0]
                        if choice.finish_reason:
                            finish, progressed = choice.finish_reason, True
                        for piece in getattr(choice.delta, "tool_calls", None) or ():
                            _merge_tool_delta(calls, piece)
                            progressed = True
                        delta = getattr(choice.delta, "content", None)
                        if delta:
                            progressed = True
                            parts.append(delta)
                            if on_delta is not None:
                                await on_delta(delta)
                    if progressed:
                        phase = "between_chunks"
                        timer.reschedule(min(total_at, loop.time() + limits[phase]))
        except TimeoutError:
            await _close(stream)
            which = "total" if loop.time() >= total_at - 0.001 else phase
            limit = request.total_timeout if which == "total" else limits[which]
            raise ProviderError(
                f"the model call exceeded its {which.replace('_', ' ')} deadline of {limit:g}s",
                kind="timeout",
                phase=which,
            ) from None
        except ProviderError:
            raise
        except Exception as exc:
            await _close(stream)
            where = f" (model {request.model}" + (
                f" at --api-base {request.api_base})" if request.api_base else ")"
            )
            raise _classify(exc, Redactor([request.api_key]), phase, where) from None
        finally:
            _WATCH.reset(watched)
        if finish is None:
            # The stream ended without saying it was done: text may be missing and a tool call
            # may be cut short; a partial tool call must never run.
            raise ProviderError("the answer stopped before the model said it was done", kind="cut")
        text = "".join(parts)
        tokens_in = int(getattr(usage, "prompt_tokens", 0) or 0) or _estimate(request.messages)
        tokens_out = int(getattr(usage, "completion_tokens", 0) or 0) or max(1, len(text) // 4)
        details = getattr(usage, "prompt_tokens_details", None)
        cached = int(getattr(details, "cached_tokens", 0) or 0) if details else 0
        reported = _reported_cost(usage)
        cost = (
            reported
            if reported is not None
            else self._cost(request.model, tokens_in, tokens_out, cached)
        )
        return Completion(
            text=text,
            model=request.model,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            cached_tokens=cached,
            cost=cost,
            cost_source=REPORTED
            if reported is not None
            else LISTED
            if cost is not None
            else UNKNOWN,
            reported_cost=reported,
            latency_ms=(time.perf_counter() - started) * 1000,
            finish_reason=finish,
            tool_calls=tuple(
                ToolCall(id=c["id"] or f"call_{i}", name=c["name"], arguments=c["arguments"])
                for i, c in sorted(calls.items())
            ),
        )

    async def aclose(self) -> None:
        """Close the connections this event loop's calls kept open (at daemon shutdown)."""
        global _SESSION
        if _SESSION is not None and _SESSION[0] is asyncio.get_running_loop():
            session, _SESSION = _SESSION[1], None
            await session.close()

    def _cost(self, model: str, tokens_in: int, tokens_out: int, cached: int) -> float | None:
        # From the price list's per-token prices (litellm caches the lookup): its
        # cost_per_token walks the whole price map on every call (~0.3 ms). A model the list
        # does not price has an unknown cost (None), never a cost of 0.
        info = self.model_info(model)
        if info.price_in is None or info.price_out is None:
            return None
        price_cached = info.price_cached if info.price_cached is not None else info.price_in
        fresh = max(0, tokens_in - cached)
        return fresh * info.price_in + cached * price_cached + tokens_out * info.price_out


def _reported_cost(usage: Any) -> float | None:
    """The cost a provider put in its usage (OpenRouter and some gateways report ``cost`` in
    USD); None when it reported none."""
    value = getattr(usage, "cost", None) if usage is not None else None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return None
    return float(value)


class _Watch:
    """What the HTTP trace of the current call reports back to it (see :func:`_session`)."""

    on_sent: Callable[[], None] | None = None


#: The call running in this task, if any: the trace callback finds it here.
_WATCH: contextvars.ContextVar[_Watch | None] = contextvars.ContextVar(
    "kyros_ai_watch", default=None
)
_SESSION: tuple[asyncio.AbstractEventLoop, aiohttp.ClientSession] | None = None


async def _request_sent(session: Any, context: Any, params: Any) -> None:
    watch = _WATCH.get()
    if watch is not None and watch.on_sent is not None:
        watch.on_sent()


def _session(loop: asyncio.AbstractEventLoop) -> aiohttp.ClientSession:
    """The HTTP session provider calls go through, one per event loop (the daemon has one).

    litellm makes its own sessions, which say nothing about where a call stands; this one is
    traced, so the connect deadline ends once the request is out on an open connection and the
    first-token deadline starts there. Without it, a server that accepted the connection and
    never answered held the call for the whole connect deadline (30 s) instead of the
    first-token one. Providers litellm calls without a shared session are timed from the
    response's start instead (see ``complete``).
    """
    global _SESSION
    if _SESSION is None or _SESSION[0] is not loop or _SESSION[1].closed:
        trace = aiohttp.TraceConfig()
        trace.on_request_headers_sent.append(_request_sent)
        # No pool-wide cap: the worker pool bounds how many calls run at once (16 by default).
        connector = aiohttp.TCPConnector(limit=0)
        _SESSION = (loop, aiohttp.ClientSession(connector=connector, trace_configs=[trace]))
    return _SESSION[1]


#: Chunks of a stream litellm may keep: its repetition check reads the last two.
KEPT_CHUNKS = 8


def _forget_old_chunks(stream: Any) -> None:
    """Let litellm keep only a stream's newest chunks.

    litellm keeps every chunk of a stream (~3.5 KB each) to rebuild the whole answer for its
    own logging and cost callbacks, which kyros does not use: kyros takes the text, tool calls
    and usage as they pass. Kept, a ten-minute answer held ~20 MB until its end, and 100 runs
    streaming at once grew the daemon by ~2 MB per run every 40 s.
    """
    chunks = getattr(stream, "chunks", None)
    if isinstance(chunks, list) and len(chunks) > 2 * KEPT_CHUNKS:
        del chunks[:-KEPT_CHUNKS]


_INFO_CACHE: dict[str, ModelInfo] = {}
_INFO_CACHE_MAX = 1024


def _lookup_model_info(model: str) -> ModelInfo:
    try:
        info = litellm.get_model_info(model)
    except Exception:
        return ModelInfo()  # unknown to litellm's price list (a local server, say)

    def number(key: str) -> Any:
        value = info.get(key)
        return value if isinstance(value, int | float) and value >= 0 else None

    return ModelInfo(
        context_window=number("max_input_tokens") or number("max_tokens"),
        max_output=number("max_output_tokens"),
        price_in=number("input_cost_per_token"),
        price_out=number("output_cost_per_token"),
        price_cached=number("cache_read_input_token_cost"),
        tools=info.get("supports_function_calling"),
        vision=info.get("supports_vision"),
    )


async def _close(stream: Any) -> None:
    """Give an abandoned stream's connection back (a stalled provider would hold it open)."""
    inner = getattr(stream, "completion_stream", None)
    for target in (inner, stream):
        closer = getattr(target, "aclose", None) or getattr(target, "close", None)
        if closer is None:
            continue
        try:
            result = closer()
            if asyncio.iscoroutine(result):
                await asyncio.wait_for(result, 1.0)
        except Exception as exc:  # the call already failed; closing is best effort
            log.debug("closing an abandoned stream failed: %s", type(exc).__name__)
        return
