"""kyros's own overhead per model call: routing, the budget check and the ledger.

kyros: ``Router.complete`` over the real ``LiteLLMBackend`` with a run's ``RunSpender`` under a
run cap and a daily cap on SQLite — so every call holds its worst case on both caps in the
daemon's budget book and ends as one ledger row written with the run's totals. Anchor: a bare
``litellm.acompletion`` streaming call with the same options kyros sends (usage at the end of the
stream, which costs need) consumed to the end, to the same model, in the same process. Two
models: the scripted ``CustomLLM`` (no network: a "mocked" call) and the fake OpenAI-compatible
server over HTTP on 127.0.0.1. The two paths alternate in small blocks, so load
on the machine falls on both. Target: the median difference ≤ +0.5 ms per call.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path
from typing import Any

from benchmarks.common import Result, log, temp_base, xdg_env

#: Calls per path: a median of 300 moved by ±0.1 ms from run to run on a 2-core machine.
CALLS = 1500
BLOCK = 10
TARGET_MS = 0.5
MESSAGES = [{"role": "user", "content": "Say ok."}]


async def _bare(model: str, api_base: str | None) -> float:
    import litellm

    # What kyros asks for too: a stream that ends with its token usage (costs need it).
    kwargs: dict[str, Any] = {
        "model": model,
        "messages": MESSAGES,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if api_base:
        kwargs.update(api_base=api_base, api_key="sk-bench-routing-0000")
    t0 = time.perf_counter()
    stream = await litellm.acompletion(**kwargs)
    async for _chunk in stream:
        pass
    return time.perf_counter() - t0


async def _measure(base: Path, model: str, api_base: str | None) -> tuple[list[float], list[float]]:
    from kyros import settings
    from kyros.core.ai.litellm_backend import LiteLLMBackend
    from kyros.core.ai.models import ResolvedModel
    from kyros.core.ai.router import Router
    from kyros.core.app import Core
    from kyros.core.runs.spending import RunSpender, caps_for
    from kyros.redaction import Redactor

    env = xdg_env(base)
    url = f"sqlite+aiosqlite:///{base / 'bench.db'}"
    loaded = settings.load({"database_url": url, "budget_day": 1000.0}, env=env)
    core = Core(loaded)
    await core.start(warm_backend=False)
    try:
        (base / "ws").mkdir(exist_ok=True)
        run = await core.runs.create("plan", "bench", str(base / "ws"), model="demo")
        run["params"] = {"budget": 1000.0}
        caps = caps_for(run, loaded.settings, {})
        assert len(caps) == 2  # the run's cap and the day's: both checked before every call
        spender = RunSpender(core.store, run, caps, "plan", Redactor([]), core.runs.book)
        resolved = ResolvedModel(
            name="bench",
            litellm_model=model,
            provider="openai",
            api_base=api_base,
            api_key="sk-bench-routing-0000" if api_base else None,
            price_in=1.0,
            price_out=2.0,
            max_output=256,
        )
        router, backend = Router(), LiteLLMBackend()
        for _ in range(20):  # warm both paths: imports, connection pools, statement caches
            await _bare(model, api_base)
            await router.complete([resolved], MESSAGES, backend, spender)
        bare: list[float] = []
        kyros: list[float] = []
        for _ in range(CALLS // BLOCK):
            for _ in range(BLOCK):
                bare.append(await _bare(model, api_base))
            for _ in range(BLOCK):
                t0 = time.perf_counter()
                await router.complete([resolved], MESSAGES, backend, spender)
                kyros.append(time.perf_counter() - t0)
    finally:
        await core.stop()
    return bare, kyros


def _result(label: str, bare: list[float], kyros: list[float]) -> Result:
    b, k = statistics.median(bare) * 1000, statistics.median(kyros) * 1000
    over = k - b
    log(f"{label}: bare litellm {b:.2f} ms, through kyros {k:.2f} ms → +{over:.2f} ms per call")
    return Result(
        f"model call overhead ({label})",
        k,
        "ms",
        "bare litellm.acompletion",
        b,
        f"≤ +{TARGET_MS} ms per call",
        over <= TARGET_MS,
        f"+{over:.2f} ms per call (median of {CALLS}; routing, budget reserve + settle, ledger)",
    )


def run() -> list[Result]:
    from tests.support.fake_openai import FakeOpenAI, Reply

    from kyros.core.ai.litellm_backend import ScriptedProvider, register_scripted

    model = register_scripted("bench-route", ScriptedProvider(lambda messages: "ok"))
    results = []
    with temp_base("kbr") as base:
        bare, kyros = asyncio.run(_measure(base, model, None))
        results.append(_result("scripted CustomLLM", bare, kyros))
    with temp_base("kbr") as base, FakeOpenAI(default=Reply(text="ok")) as srv:
        bare, kyros = asyncio.run(_measure(base, "openai/fake-bench", srv.url))
        results.append(_result("HTTP to a local fake", bare, kyros))
    return results
