"""Submit → start latency on an idle daemon, from the run's own event log.

A real daemon process (SQLite store, default settings) gets ``POST /v1/runs/plan`` over its
Unix socket, one run at a time, each followed to its end before the next is sent, so every run
is submitted to an idle daemon. The latency of a run is
``run.started.created_at - run.queued.created_at`` from ``GET /v1/runs/{id}/events?follow=false``:
from the transaction that queued the job to the one its worker opened when it took it.

The model does not take part in that interval, but it decides how long each run lasts: the
scripted ``demo`` model streams its plan over ~0.7 s, so 200 demo runs alone would take minutes.
The runs therefore use the fake OpenAI-compatible server from the test suite answering at once
with a valid plan; without it (``tests.support`` not importable) they fall back to ``demo`` with
fewer runs.

Anchor: arq's default poll interval of 500 ms — a constant, not measured: how long a polling
queue may leave a job waiting on an idle worker. Target: p99 ≤ 20 ms.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from benchmarks.common import (
    Result,
    log,
    make_workspace,
    median,
    percentile,
    plan_run,
    process_env,
    running_daemon,
    temp_base,
    xdg_env,
)

RUNS = 200
DEMO_RUNS = 60
WARMUP = 3
PLAN = {
    "summary": "Add a --verbose flag.",
    "steps": [{"title": "Add the flag", "detail": "argparse option", "files": [], "tests": []}],
    "risks": [],
}
ANCHOR = "arq default poll (constant)"
ANCHOR_MS = 500.0
TARGET_MS = 20.0


def _latency_ms(events: list[dict[str, Any]]) -> float:
    at = {str(e["type"]): datetime.fromisoformat(str(e["created_at"])) for e in events}
    if "run.queued" not in at or "run.started" not in at:
        raise RuntimeError(f"run events lack run.queued/run.started: {sorted(at)}")
    return (at["run.started"] - at["run.queued"]).total_seconds() * 1000


@contextlib.contextmanager
def model_server() -> Iterator[tuple[dict[str, str], str]]:
    """``({"model", "api_base"}, description)`` of the fastest model available to runs."""
    try:
        from tests.support.fake_openai import FakeOpenAI, Reply
    except ImportError:
        yield {"model": "demo"}, "demo model"
        return
    with FakeOpenAI(default=Reply(text=json.dumps(PLAN))) as srv:
        yield {"model": "openai/fake", "api_base": srv.url}, "fake OpenAI server, instant reply"


def run() -> list[Result]:
    with temp_base("kbl") as base, model_server() as (model, described):
        runs = DEMO_RUNS if model["model"] == "demo" else RUNS
        env = process_env(xdg_env(base))
        workspace = make_workspace(base)
        with running_daemon(env) as daemon, daemon.http() as client:
            for _ in range(WARMUP):  # the first run waits for the AI backend to load
                plan_run(client, workspace, **model)
            latencies = []
            for _ in range(runs):
                events = plan_run(client, workspace, **model)
                if events[-1]["type"] != "run.succeeded":
                    raise RuntimeError(f"run ended with {events[-1]['type']}: {events[-1]}")
                latencies.append(_latency_ms(events))
    p50, p99 = median(latencies), percentile(latencies, 99)
    log(
        f"submit→start over {runs} runs: p50 {p50:.2f} ms, p99 {p99:.2f} ms, "
        f"max {max(latencies):.2f} ms"
    )
    return [
        Result(
            "latency: submit→start p50",
            p50,
            "ms",
            ANCHOR,
            ANCHOR_MS,
            "—",
            None,
            f"{runs} sequential plan runs on an idle daemon (SQLite; {described})",
        ),
        Result(
            "latency: submit→start p99",
            p99,
            "ms",
            ANCHOR,
            ANCHOR_MS,
            f"p99 ≤ {TARGET_MS:.0f} ms",
            p99 <= TARGET_MS,
            f"max {max(latencies):.1f} ms",
        ),
    ]
