"""Idle daemon resident memory, beside a bare interpreter that has imported litellm.

RSS (VmRSS from /proc/PID/status, in MB of 10^6 bytes) of a real daemon (SQLite store) once it
answers /readyz, and again after its AI backend is warm (one demo plan run, then 2 s idle). The
daemon loads the backend in the background as it starts, so the first number may already
include part of it.
Anchor: ``python -c "import litellm; input()"`` with the same offline settings — the floor any
daemon that calls models through litellm pays. Target: ≤ 300 MB (after warm-up).
"""

from __future__ import annotations

import subprocess
import sys
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
ANCHOR = "python + import litellm"


def litellm_rss(env: dict[str, str]) -> float:
    proc = subprocess.Popen(
        [sys.executable, "-c", "import litellm; print('ready', flush=True); input()"],
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
        with running_daemon(env) as daemon:
            at_start = rss_mb(daemon.pid)
            with daemon.http() as client:
                events = plan_run(client, workspace)
            if events[-1]["type"] != "run.succeeded":
                raise RuntimeError(f"demo run ended with {events[-1]['type']}")
            time.sleep(2)
            warm = rss_mb(daemon.pid)
        log(f"daemon: {at_start:.0f} MB when ready, {warm:.0f} MB warm")
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
            f"after one demo run + 2 s idle; MB = 10^6 bytes ({warm * 1e6 / 2**20:.0f} MiB)",
        ),
    ]
