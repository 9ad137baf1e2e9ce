"""Terminal throughput and keystroke latency: pty → daemon → WebSocket client, beside raw
ptyprocess on the same machine in the same run.

Throughput: `yes | head -c 64 MiB` read to the end. kyros: a daemon terminal waiting on `read`,
a WebSocket client attached over the Unix socket, then "go" typed; MB/s of terminal bytes the
client received until the exit frame. Anchor: a plain blocking ptyprocess read loop over the same
command. Target: ≥ 0.85 of raw ptyprocess. The two alternate, three times each, and the medians
are compared: a pty's speed is set by the kernel and follows the machine's load, which drifts,
and measuring one side first and the other a minute later judged the drift as much as kyros.
kyros is measured only once the daemon is idle: right after start-up it imports the AI backend
in a thread (~3 s of CPU, 15 s on a busy 2-core machine), which is not terminal work.
Keystroke latency: one byte typed, until its echo comes back (`cat` in canonical mode echoes
through the tty), 300 times. Anchor: the same with ptyprocess directly. Target p50/p99 ≤ 5/20 ms.
"""

from __future__ import annotations

import json
import os
import time

from benchmarks.common import (
    Result,
    log,
    percentile,
    process_env,
    running_daemon,
    temp_base,
    wait_idle,
    xdg_env,
)
from benchmarks.common import median as _median

SIZE = 64 * 2**20
ROUNDS = 3
KEYS = 300
COMMAND = f"yes | head -c {SIZE}"


def _raw_throughput() -> float:
    import ptyprocess

    proc = ptyprocess.PtyProcess.spawn(["/bin/sh", "-c", COMMAND], dimensions=(24, 80))
    got = 0
    t0 = time.perf_counter()
    try:
        while True:
            try:
                got += len(proc.read(65536))
            except EOFError:
                break
    finally:
        proc.close(force=True)
    return got / (time.perf_counter() - t0) / 1e6


def _raw_latency() -> list[float]:
    import ptyprocess

    proc = ptyprocess.PtyProcess.spawn(["/bin/cat"], dimensions=(24, 80))
    samples = []
    try:
        for i in range(KEYS):
            key = bytes([97 + i % 26])
            t0 = time.perf_counter()
            proc.write(key)
            while key not in proc.read(64):
                pass
            samples.append(time.perf_counter() - t0)
    finally:
        proc.close(force=True)
    return samples


def _target(daemon: object) -> object:
    from kyros.client.discovery import DaemonTarget

    return DaemonTarget(base_url="http://kyros", uds=str(daemon.socket), local=False)  # type: ignore[attr-defined]


def _kyros_throughput(daemon: object, home: str) -> float:
    from kyros.client.attach import open_attach

    with daemon.http() as client:  # type: ignore[attr-defined]
        term = client.post(
            "/v1/terminals",
            json={"command": ["/bin/sh", "-c", f"read x; {COMMAND}"], "cwd": home},
        ).json()
    conn = open_attach(_target(daemon), term["id"], rows=24, cols=80)  # type: ignore[arg-type]
    try:
        conn.send(b"go\r")
        got = 0
        t0 = time.perf_counter()
        for message in conn:
            if isinstance(message, bytes):
                got += len(message)
            elif json.loads(message)["type"] == "exit":
                break
        return got / (time.perf_counter() - t0) / 1e6
    finally:
        conn.close()


def _kyros_latency(daemon: object, home: str) -> list[float]:
    from kyros.client.attach import open_attach

    with daemon.http() as client:  # type: ignore[attr-defined]
        echo = client.post("/v1/terminals", json={"command": ["/bin/cat"], "cwd": home}).json()
    conn = open_attach(_target(daemon), echo["id"], rows=24, cols=80)  # type: ignore[arg-type]
    samples = []
    try:
        conn.recv(timeout=5)  # the (empty) scrollback
        for i in range(KEYS):
            key = bytes([97 + i % 26])
            t0 = time.perf_counter()
            conn.send(key)
            while True:
                message = conn.recv(timeout=5)
                if isinstance(message, bytes) and key in message:
                    break
            samples.append(time.perf_counter() - t0)
    finally:
        conn.close()
    return samples


def run() -> list[Result]:
    raw_rates, rates = [], []
    with temp_base("kbt") as base:
        env = process_env(xdg_env(base))
        with running_daemon(env) as daemon:
            wait_idle(daemon.pid)
            for _ in range(ROUNDS):
                raw_rates.append(_raw_throughput())
                rates.append(_kyros_throughput(daemon, str(base)))
            raw_keys = _raw_latency()
            keys = _kyros_latency(daemon, str(base))
            load = os.getloadavg()[0]  # the last minute, this benchmark included
    rate, raw_rate = _median(rates), _median(raw_rates)
    log(
        "terminal MB/s, kyros "
        + " ".join(f"{r:.2f}" for r in rates)
        + " vs raw "
        + " ".join(f"{r:.2f}" for r in raw_rates)
        + f"; load average {load:.1f}"
    )
    ms = [s * 1000 for s in keys]
    raw_ms = [s * 1000 for s in raw_keys]
    log(f"terminal: {rate:.1f} MB/s vs raw {raw_rate:.1f}; keys p50 {_median(ms):.2f} ms")
    return [
        Result(
            "terminal: pty → WebSocket throughput",
            rate,
            "MB/s",
            "raw ptyprocess read loop",
            raw_rate,
            "ratio ≥ 0.85",
            rate >= 0.85 * raw_rate,
            f"{SIZE // 2**20} MiB of `yes`, Unix socket, one client; median of {ROUNDS}, "
            f"alternating with the anchor; load average {load:.1f} on {os.cpu_count()} CPUs",
        ),
        Result(
            "terminal: keystroke echo p50",
            _median(ms),
            "ms",
            "raw ptyprocess p50",
            _median(raw_ms),
            "≤ 5 ms",
            _median(ms) <= 5,
        ),
        Result(
            "terminal: keystroke echo p99",
            percentile(ms, 99),
            "ms",
            "raw ptyprocess p99",
            percentile(raw_ms, 99),
            "≤ 20 ms",
            percentile(ms, 99) <= 20,
        ),
    ]
