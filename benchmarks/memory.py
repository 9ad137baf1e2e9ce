"""Idle daemon resident memory, beside a bare interpreter that has imported litellm.

RSS (VmRSS from /proc/PID/status, in MB of 10^6 bytes) of a real daemon (SQLite store) once it
answers /readyz, and again after its AI backend is warm: one plan run against an
OpenAI-compatible server on 127.0.0.1 (the path every provider call takes), then 2 s idle. The
daemon loads the backend in the background as it starts, so the first number may already
include part of it.
Anchor: ``python -c "import litellm; input()"`` with the same offline settings — the floor any
daemon that calls models through litellm pays. Target: ≤ 300 MB (after warm-up).

Also reported, not judged: the same daemon after a run of the scripted ``demo`` model. litellm
hands custom providers (``CustomLLM``) a tiktoken encoding it loads for them (~40 MB), which a
provider call never loads; and a bare interpreter after one streamed ``CustomLLM`` call.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

from benchmarks.common import (
    Result,
    log,
    make_workspace,
    plan_run,
    process_env,
    rss_mb,
    running_daemon,
    stop_process,
    temp_base,
    xdg_env,
)

TARGET_MB = 300.0
PLAN = (
    '{"summary": "s", "steps": [{"title": "t", "detail": "d", "files": [], "tests": []}], '
    '"risks": []}'
)
ANCHOR = "python + import litellm"

IMPORT_ONLY = "import litellm; print('ready', flush=True); input()"
ONE_STREAMED_CALL = textwrap.dedent("""\
    import asyncio

    import litellm
    from litellm.llms.custom_llm import CustomLLM
    from litellm.utils import custom_llm_setup


    class Echo(CustomLLM):
        async def astreaming(self, *args, **kwargs):
            usage = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
            yield {"text": "hi", "is_finished": True, "finish_reason": "stop", "index": 0,
                   "tool_use": None, "usage": usage}


    litellm.custom_provider_map = [{"provider": "echo", "custom_handler": Echo()}]
    custom_llm_setup()


    async def call():
        messages = [{"role": "user", "content": "hello"}]
        async for _ in await litellm.acompletion(model="echo/x", messages=messages, stream=True):
            pass


    asyncio.run(call())
    print("ready", flush=True)
    input()
""")


def litellm_rss(env: dict[str, str], script: str = IMPORT_ONLY) -> float:
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if line.strip() != "ready":
            err = proc.stderr.read() if proc.stderr else ""
            raise RuntimeError(f"litellm import failed: {err[-800:]}")
        time.sleep(0.5)
        return rss_mb(proc.pid)
    finally:
        if proc.stdin:
            proc.stdin.close()
        stop_process(proc, timeout=5)


def run() -> list[Result]:
    with temp_base("kbm") as base:
        env = process_env(xdg_env(base))
        workspace = make_workspace(base)
        anchor = litellm_rss(env)
        log(f"python + import litellm: {anchor:.0f} MB")
        called = litellm_rss(env, ONE_STREAMED_CALL)
        log(f"python + litellm, one streamed call: {called:.0f} MB")
        from tests.support.fake_openai import FakeOpenAI, Reply

        with running_daemon(env) as daemon, FakeOpenAI(default=Reply(text=PLAN)) as srv:
            at_start = rss_mb(daemon.pid)
            with daemon.http() as client:
                events = plan_run(client, workspace, model="openai/bench", api_base=srv.url)
                if events[-1]["type"] != "run.succeeded":
                    raise RuntimeError(f"plan run ended with {events[-1]['type']}")
                time.sleep(2)
                warm = rss_mb(daemon.pid)
                events = plan_run(client, workspace)
                if events[-1]["type"] != "run.succeeded":
                    raise RuntimeError(f"demo run ended with {events[-1]['type']}")
                time.sleep(2)
                demo = rss_mb(daemon.pid)
        log(f"daemon: {at_start:.0f} MB when ready, {warm:.0f} MB warm, {demo:.0f} MB after demo")
    return [
        Result(
            "memory: daemon RSS when ready",
            at_start,
            "MB",
            ANCHOR,
            anchor,
            "—",
            None,
            "backend may still be loading in the background",
        ),
        Result(
            "memory: daemon RSS, backend warm",
            warm,
            "MB",
            ANCHOR,
            anchor,
            f"≤ {TARGET_MB:.0f} MB",
            warm <= TARGET_MB,
            "after one plan run against an OpenAI-compatible server + 2 s idle; "
            f"MB = 10^6 bytes ({warm * 1e6 / 2**20:.0f} MiB)",
        ),
        Result(
            "memory: daemon RSS after a demo run",
            demo,
            "MB",
            ANCHOR,
            anchor,
            "—",
            None,
            "litellm hands custom providers (the scripted demo model) a tokenizer it loads "
            "for them (~40 MB); provider calls do not load it",
        ),
        Result(
            "memory: daemon RSS after a demo run",
            demo,
            "MB",
            "python + litellm after one CustomLLM call",
            called,
            "—",
            None,
            "the demo number beside litellm's floor once it has made the same kind of call",
        ),
    ]
