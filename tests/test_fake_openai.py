"""The fake OpenAI server speaks the wire format real clients (httpx, litellm) expect."""

# ruff: noqa: F811  (tests take the imported `fake_openai` fixture as an argument)

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("LITELLM_OFFLINE_MODE", "true")

import httpx
import litellm
import openai
import pytest

from tests.support.fake_openai import FakeOpenAI, Reply
from tests.support.fixtures import fake_openai  # noqa: F401

litellm.suppress_debug_info = True

# litellm builds a pydantic TypeAdapter over a ReadOnly TypedDict when it lazily imports its
# GitHub Copilot provider on the first call; the resulting UserWarning is not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:.*ReadOnly. qualifier:UserWarning")

MESSAGES = [{"role": "user", "content": "Say hello"}]
CHUNK_KEYS = {"id", "object", "created", "model", "choices"}


async def sse_events(client: httpx.AsyncClient, url: str, body: dict[str, Any]) -> list[str]:
    """POST a streaming request and return the raw `data:` payloads in order."""
    events = []
    async with client.stream("POST", url, json=body) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        async for line in resp.aiter_lines():
            if line.startswith("data: "):
                events.append(line[len("data: ") :])
    return events


def llm_kwargs(srv: FakeOpenAI, **extra: Any) -> dict[str, Any]:
    return {
        "model": "openai/fake-model",
        "api_base": srv.url,
        "api_key": "sk-test",
        "messages": MESSAGES,
        "num_retries": 0,
        "max_retries": 0,
        **extra,
    }


# -- lifecycle and plain HTTP ---------------------------------------------------


def test_starts_fast_and_stops_without_leaking_threads() -> None:
    before = set(threading.enumerate())
    started = time.monotonic()
    srv = FakeOpenAI().start()
    assert time.monotonic() - started < 0.5
    assert srv.url == f"http://127.0.0.1:{srv.port}/v1"
    with pytest.raises(RuntimeError):
        srv.start()
    srv.stop()
    srv.stop()  # idempotent
    assert set(threading.enumerate()) == before


def test_models_endpoint_and_request_recording(fake_openai: FakeOpenAI) -> None:
    resp = httpx.get(f"{fake_openai.url}/models", headers={"Authorization": "Bearer sk-x"})
    assert resp.status_code == 200
    assert [m["id"] for m in resp.json()["data"]] == ["fake-model"]
    [req] = fake_openai.wait_for_requests(1, timeout=1)
    assert (req.method, req.path, req.body) == ("GET", "/v1/models", None)
    assert req.headers["authorization"] == "Bearer sk-x"


def test_unknown_path_is_an_openai_shaped_404(fake_openai: FakeOpenAI) -> None:
    resp = httpx.post(f"{fake_openai.url}/nope", json={})
    assert resp.status_code == 404
    assert set(resp.json()["error"]) >= {"message", "type", "code"}


def test_wait_for_requests_times_out(fake_openai: FakeOpenAI) -> None:
    with pytest.raises(TimeoutError):
        fake_openai.wait_for_requests(1, timeout=0.05)


def test_fifo_then_default(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Reply(text="first"), Reply(text="second"))
    fake_openai.default = Reply(text="fallback")
    url = f"{fake_openai.url}/chat/completions"
    texts = [
        httpx.post(url, json={"model": "m", "messages": MESSAGES}).json()["choices"][0]["message"][
            "content"
        ]
        for _ in range(3)
    ]
    assert texts == ["first", "second", "fallback"]
    assert fake_openai.requests[0].body == {"model": "m", "messages": MESSAGES}


def test_non_streaming_completion_shape(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Reply(text="hi", prompt_tokens=11, completion_tokens=3))
    body = httpx.post(
        f"{fake_openai.url}/chat/completions", json={"model": "fake-model", "messages": MESSAGES}
    ).json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"] == "hi"
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"] == {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}


def test_error_reply_has_openai_error_body(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Reply.error(503, "overloaded"), Reply(status=500))
    url = f"{fake_openai.url}/chat/completions"
    resp = httpx.post(url, json={"messages": MESSAGES})
    assert resp.status_code == 503
    assert resp.json()["error"]["message"] == "overloaded"
    resp = httpx.post(url, json={"messages": MESSAGES})
    assert resp.status_code == 500
    assert resp.json()["error"]["type"] == "server_error"


# -- streaming over httpx ---------------------------------------------------------


@pytest.mark.asyncio
async def test_httpx_stream_chunks_follow_openai_format(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Reply(text="Hello, streaming world!", chunk_size=5))
    async with httpx.AsyncClient() as client:
        events = await sse_events(
            client,
            f"{fake_openai.url}/chat/completions",
            {
                "model": "fake-model",
                "messages": MESSAGES,
                "stream": True,
                "stream_options": {"include_usage": True},
            },
        )
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(set(c) >= CHUNK_KEYS and c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    body = chunks[:-1]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in body)
    assert text == "Hello, streaming world!"
    assert len(body) == 1 + 5 + 1  # role, five content pieces, finish
    assert body[-1]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["total_tokens"] > 0


@pytest.mark.asyncio
async def test_slow_drip_and_keepalive_during_stall(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(
        Reply(
            text="abcdef",
            chunk_size=2,
            delay_between_chunks=0.1,
            stall_after_chunks=3,
            keepalive_comments=True,
        )
    )
    lines, stamps = [], []
    async with (
        httpx.AsyncClient() as client,
        client.stream(
            "POST",
            f"{fake_openai.url}/chat/completions",
            json={"messages": MESSAGES, "stream": True},
        ) as resp,
    ):
        async for line in resp.aiter_lines():
            if line:
                lines.append(line)
                stamps.append(time.monotonic())
            if line == ": keep-alive":
                break
    assert [ln.startswith("data: ") for ln in lines] == [True, True, True, False]
    assert stamps[2] - stamps[1] >= 0.09  # drip gap between the 2nd and 3rd chunk


@pytest.mark.asyncio
async def test_stall_ends_when_client_disconnects(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Reply(text="abc", stall_after_chunks=1))
    async with httpx.AsyncClient() as client:
        async with client.stream(
            "POST",
            f"{fake_openai.url}/chat/completions",
            json={"messages": MESSAGES, "stream": True},
        ) as resp:
            assert (await anext(resp.aiter_lines())).startswith("data: ")
            assert fake_openai.open_connections == 1
        deadline = time.monotonic() + 1
        while fake_openai.open_connections and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert fake_openai.open_connections == 0


@pytest.mark.asyncio
async def test_stalled_stream_is_released_by_stop() -> None:
    srv = FakeOpenAI().start()
    srv.enqueue(Reply(text="abc", stall_after_chunks=1))
    async with (
        httpx.AsyncClient() as client,
        client.stream(
            "POST",
            f"{srv.url}/chat/completions",
            json={"messages": MESSAGES, "stream": True},
        ) as resp,
    ):
        lines = resp.aiter_lines()
        assert (await anext(lines)).startswith("data: ")
        started = time.monotonic()
        await asyncio.to_thread(srv.stop)
        assert time.monotonic() - started < 1
        with pytest.raises(httpx.RemoteProtocolError):
            async for _ in lines:
                pass


@pytest.mark.asyncio
async def test_httpx_sees_bad_json_and_cut_body(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(
        Reply(text="abc", bad_json=True), Reply(text="x" * 400, cut_after_bytes=200)
    )
    url = f"{fake_openai.url}/chat/completions"
    req = {"messages": MESSAGES, "stream": True}
    async with httpx.AsyncClient() as client:
        events = await sse_events(client, url, req)
        with pytest.raises(json.JSONDecodeError):
            [json.loads(e) for e in events[:-1]]
        with pytest.raises(httpx.RemoteProtocolError):
            await sse_events(client, url, req)


# -- litellm against the server -----------------------------------------------------


@pytest.mark.asyncio
async def test_litellm_streams_text_and_usage(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(
        Reply(text="Hello there, this arrives in pieces.", prompt_tokens=9, completion_tokens=8)
    )
    stream = await litellm.acompletion(
        **llm_kwargs(fake_openai, stream=True, stream_options={"include_usage": True})
    )
    text, usage = "", None
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
        usage = getattr(chunk, "usage", None) or usage
    assert text == "Hello there, this arrives in pieces."
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (9, 8, 17)
    [req] = fake_openai.requests
    assert req.body["model"] == "fake-model"
    assert req.body["stream_options"] == {"include_usage": True}
    assert req.headers["authorization"] == "Bearer sk-test"


@pytest.mark.asyncio
async def test_litellm_reassembles_streamed_tool_call(fake_openai: FakeOpenAI) -> None:
    args = json.dumps({"city": "Paris", "unit": "celsius"})
    fake_openai.enqueue(
        Reply(chunk_size=5, tool_calls=[{"id": "call_1", "name": "get_weather", "arguments": args}])
    )
    stream = await litellm.acompletion(**llm_kwargs(fake_openai, stream=True))
    chunks = [chunk async for chunk in stream]
    pieces = [
        tc.function.arguments
        for c in chunks
        if c.choices and c.choices[0].delta.tool_calls
        for tc in c.choices[0].delta.tool_calls
        if tc.function.arguments
    ]
    assert len(pieces) > 3
    message = litellm.stream_chunk_builder(chunks).choices[0].message
    [call] = message.tool_calls
    assert (call.id, call.function.name) == ("call_1", "get_weather")
    assert json.loads(call.function.arguments) == {"city": "Paris", "unit": "celsius"}


@pytest.mark.asyncio
async def test_litellm_rate_limit_carries_retry_after(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Reply.error(429, "slow down", headers={"Retry-After": "2"}))
    with pytest.raises(litellm.RateLimitError) as info:
        await litellm.acompletion(**llm_kwargs(fake_openai, stream=True))
    assert "slow down" in str(info.value)
    assert info.value.response.headers["retry-after"] == "2"
    assert len(fake_openai.requests) == 1  # no hidden retries


@pytest.mark.asyncio
async def test_litellm_times_out_when_first_chunk_never_comes(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Reply(text="late", delay_first_chunk=10))
    started = time.monotonic()
    with pytest.raises(litellm.Timeout):
        stream = await litellm.acompletion(**llm_kwargs(fake_openai, stream=True, timeout=0.5))
        async for _ in stream:
            pass
    assert time.monotonic() - started < 2


@pytest.mark.asyncio
async def test_litellm_errors_on_cut_stream(fake_openai: FakeOpenAI) -> None:
    fake_openai.enqueue(Reply(text="y" * 400, cut_after_bytes=250))
    with pytest.raises(openai.APIError):
        stream = await asyncio.wait_for(
            litellm.acompletion(**llm_kwargs(fake_openai, stream=True, timeout=5)), 5
        )
        await asyncio.wait_for(_drain(stream), 5)


async def _drain(stream: Any) -> None:
    async for _ in stream:
        pass
