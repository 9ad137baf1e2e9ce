"""Shared pieces of the benchmarks: results, temp dirs, daemons, PostgreSQL, statistics."""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.postgres import PG_ADMIN_DSN, pg_admin

REPO = Path(__file__).resolve().parents[1]
OFFLINE_ENV = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_OFFLINE_MODE": "true"}


@dataclass
class Result:
    """One measured number, beside the anchor it is judged against.

    ``ok`` is None when there is no target (the number is reported, not judged) or the
    benchmark was skipped; ``note`` says why, or anything else worth printing.
    """

    name: str
    value: float | None
    unit: str
    anchor_name: str
    anchor_value: float | None
    target_text: str
    ok: bool | None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.value is None or not self.anchor_value:
            return None
        return self.value / self.anchor_value


def skipped(name: str, reason: str, anchor_name: str = "", target_text: str = "") -> Result:
    return Result(name, None, "", anchor_name, None, target_text, None, f"skipped: {reason}")


# --- numbers -------------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values)


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (``pct`` in 0..100)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def log(message: str) -> None:
    sys.stderr.write(f"  · {message}\n")
    sys.stderr.flush()


# --- temp dirs and environments ------------------------------------------------------------


@contextlib.contextmanager
def temp_base(prefix: str = "kb") -> Iterator[Path]:
    """A private temp dir with a short path (Unix socket paths are limited to 108 bytes)."""
    base = Path(f"/tmp/{prefix}-{secrets.token_hex(4)}")
    base.mkdir(mode=0o700)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def xdg_env(base: Path) -> dict[str, str]:
    """XDG variables that put every kyros path under ``base``."""
    env = {
        "XDG_RUNTIME_DIR": str(base / "run"),
        "XDG_DATA_HOME": str(base / "data"),
        "XDG_STATE_HOME": str(base / "state"),
        "XDG_CONFIG_HOME": str(base / "config"),
        "XDG_CACHE_HOME": str(base / "cache"),
    }
    (base / "run").mkdir(mode=0o700, exist_ok=True)
    return env


def process_env(
    xdg: dict[str, str], *, pythonpath: list[str] | None = None, **extra: str
) -> dict[str, str]:
    """The environment of a kyros child process: no user settings, no provider keys, offline."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("KYROS_") and not k.endswith("_API_KEY")
    }
    env.update(OFFLINE_ENV)
    env.update(xdg)
    env.update(extra)
    env["PYTHONPATH"] = os.pathsep.join([*(pythonpath or []), str(REPO)])
    return env


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` in MB (10^6 bytes), from /proc/<pid>/status (VmRSS, KiB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024 / 1e6
    raise RuntimeError(f"no VmRSS for pid {pid}")


def stop_process(proc: subprocess.Popen[Any], timeout: float = 20) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


# --- a real daemon -------------------------------------------------------------------------


@dataclass
class Daemon:
    """A `kyros daemon serve` process on a temporary socket."""

    env: dict[str, str]
    proc: subprocess.Popen[bytes]
    socket: Path
    log: Path
    tcp: tuple[str, int] | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def http(self, timeout: float = 30.0) -> Any:
        """An httpx client on the daemon's Unix socket."""
        import httpx

        return httpx.Client(
            transport=httpx.HTTPTransport(uds=str(self.socket)),
            base_url="http://kyros",
            timeout=timeout,
        )

    def token(self) -> str | None:
        from kyros import paths, tokens

        return tokens.read_local_token(paths.resolve(self.env))

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                with self.http(timeout=2) as c:
                    r = c.get("/readyz")
                    if r.status_code == 200 and r.json().get("ready"):
                        return
            except Exception:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"daemon not ready in {timeout}s:\n{self.log.read_text()}")

    def stop(self) -> None:
        stop_process(self.proc)


def start_daemon(env: dict[str, str], *args: str) -> Daemon:
    from kyros import paths

    p = paths.resolve(env)
    p.state_dir.mkdir(parents=True, exist_ok=True)
    log_path = p.state_dir / f"bench-daemon-{secrets.token_hex(3)}.log"
    with log_path.open("ab") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kyros", "daemon", "serve", *args],
            env=env,
            stdout=fh,
            stderr=fh,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    d = Daemon(env=env, proc=proc, socket=p.socket, log=log_path)
    try:
        d.wait_ready()
    except BaseException:
        d.stop()
        raise
    return d


@contextlib.contextmanager
def running_daemon(env: dict[str, str], *args: str) -> Iterator[Daemon]:
    d = start_daemon(env, *args)
    try:
        yield d
    finally:
        d.stop()


def parse_sse(text: str) -> list[dict[str, Any]]:
    """The JSON ``data:`` payloads of an SSE body."""
    out = []
    for line in text.splitlines():
        if line.startswith("data:"):
            out.append(json.loads(line[5:].strip()))
    return out


def plan_run(
    client: Any, workspace: Path, goal: str = "x", model: str = "demo", api_base: str | None = None
) -> list[dict[str, Any]]:
    """Create a plan run, wait for its end, and return its stored events."""
    r = client.post(
        "/v1/runs/plan",
        json={"goal": goal, "workspace": str(workspace), "model": model, "api_base": api_base},
    )
    r.raise_for_status()
    run_id = r.json()["id"]
    with client.stream("GET", f"/v1/runs/{run_id}/events") as stream:  # follows to the end
        for _ in stream.iter_bytes():
            pass
    r = client.get(f"/v1/runs/{run_id}/events", params={"follow": "false"})
    r.raise_for_status()
    return parse_sse(r.text)


def make_workspace(base: Path) -> Path:
    ws = base / "ws"
    ws.mkdir()
    (ws / "README.md").write_text("# tiny\n\nA workspace for benchmarks.\n")
    (ws / "main.py").write_text("def main() -> None:\n    print('hello')\n")
    return ws


# --- PostgreSQL ----------------------------------------------------------------------------


def pg_dsn(database: str) -> str:
    """The plain (asyncpg) DSN of ``database`` on the admin DSN's server."""
    base, _, _ = PG_ADMIN_DSN.rpartition("/")
    return f"{base}/{database}"


@contextlib.asynccontextmanager
async def pg_database() -> Any:
    """A fresh PostgreSQL database, dropped afterwards; yields its name."""
    name = f"kyros_bench_{secrets.token_hex(5)}"
    await pg_admin(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        await pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
