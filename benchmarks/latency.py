"""Submit → start latency on an idle daemon, from the run's own event log.

A real daemon process (SQLite store, default settings) gets ``POST /v1/runs/plan`` with the
scripted ``demo`` model over its Unix socket, one run at a time, each followed to its end. The
latency of a run is ``run.started.created_at − run.queued.created_at``: from the transaction that
queued the job to the one the worker opened when it took it. Anchor: arq's default poll interval
of 500 ms — a constant, not measured: how long a polling queue may leave a job waiting on an idle
worker. Target: p99 ≤ 20 ms.
"""

from __future__ import annotations

from datetime import datetime

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
WARMUP = 3
ANCHOR = "arq default poll (constant)"
ANCHOR_MS = 500.0
TARGET_MS = 20.0


def _latency_ms(events: list[dict[str, object]]) -> float:
    at = {e["type"]: datetime.fromisoformat(str(e["created_at"])) for e in events}
    if "run.queued" not in at or "run.started" not in at:
        raise RuntimeError(f"run events lack run.queued/run.started: {sorted(at)}")
    return (at["run.started"] - at["run.queued"]).total_seconds() * 1000


def run() -> list[Result]:
    with temp_base("kbl") as base:
        env = process_env(xdg_env(base))
        workspace = make_workspace(base)
        with running_daemon(env) as daemon, daemon.http() as client:
            for _ in range(WARMUP):  # the first run waits for the AI backend to load
                plan_run(client, workspace)
            latencies = []
            for _ in range(RUNS):
                events = plan_run(client, workspace)
                if events[-1]["type"] != "run.succeeded":
                    raise RuntimeError(f"demo run ended with {events[-1]['type']}: {events[-1]}")
                latencies.append(_latency_ms(events))
    p50, p99 = median(latencies), percentile(latencies, 99)
    log(f"submit→start over {RUNS} runs: p50 {p50:.2f} ms, p99 {p99:.2f} ms, "
        f"max {max(latencies):.2f} ms")
    return [
        Result("latency: submit→start p50", p50, "ms", ANCHOR, ANCHOR_MS, "—", None,
               f"{RUNS} sequential demo plan runs on an idle daemon (SQLite)"),
        Result("latency: submit→start p99", p99, "ms", ANCHOR, ANCHOR_MS,
               f"p99 ≤ {TARGET_MS:.0f} ms", p99 <= TARGET_MS, f"max {max(latencies):.1f} ms"),
    ]
