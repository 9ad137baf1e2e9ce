"""Shared pieces of the benchmarks: results, temp dirs, daemons, seeded stores, real terminals,
PostgreSQL, statistics."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import random
import re
import secrets
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.support.postgres import PG_ADMIN_DSN, pg_admin

REPO = Path(__file__).resolve().parents[1]
OFFLINE_ENV = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_OFFLINE_MODE": "true"}
#: Where child interpreters keep their bytecode. An installed kyros runs from compiled modules;
#: with ``PYTHONDONTWRITEBYTECODE`` set (as on some CI machines) every child would compile
#: kyros's modules from source again (~1 ms each) while the anchors' packages load compiled.
#: The first (warm-up) run of each command fills this cache for both.
PYCACHE = Path(os.environ.get("TMPDIR", "/tmp")) / "kyros-bench-pycache"


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
        if not k.startswith("KYROS_")
        and not k.endswith("_API_KEY")
        and k != "PYTHONDONTWRITEBYTECODE"
    }
    env.update(OFFLINE_ENV)
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
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


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) process ``pid`` has used, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat", "rb") as fh:
        fields = fh.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def wait_idle(pid: int, timeout: float = 90.0) -> None:
    """Until process ``pid`` uses under 5% of a CPU over half a second (or ``timeout``): a
    daemon right after start-up imports its AI backend in a thread (~3 s of CPU, 15 s on a busy
    2-core machine), which is not what a benchmark of a warm daemon measures."""
    deadline = time.monotonic() + timeout
    before = cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = cpu_seconds(pid)
        if now - before < 0.025:
            return
        before = now
    log(f"process {pid} still busy after {timeout:.0f} s; measuring anyway")


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


# --- a store full of runs ------------------------------------------------------------------

#: What finished runs end as, roughly as often as in a busy project.
_ENDINGS = (
    ("succeeded", 80),
    ("failed", 10),
    ("cancelled", 6),
    ("budget_exhausted", 2),
    ("escalated", 2),
)
_KINDS = (("plan", "planner"), ("implement", "implementer"), ("critic", "critic"))
_GOALS = (
    "add a --verbose flag to the CLI and document it",
    "fix the off-by-one in pagination of /v1/items",
    "review the retry logic of the HTTP client",
    "split settings.py into a package; keep the public names",
    "make the importer skip unreadable files instead of failing",
    "port the cache from lru_cache to a TTL cache with a size cap",
)


def finished_run(index: int, created: datetime, rng: random.Random) -> dict[str, Any]:
    """The columns of one finished run, as the daemon would have stored it."""
    from kyros.core.ids import new_id

    status = rng.choices([s for s, _ in _ENDINGS], weights=[w for _, w in _ENDINGS])[0]
    kind, agent = _KINDS[index % len(_KINDS)]
    tokens_in, tokens_out = rng.randint(2_000, 60_000), rng.randint(200, 6_000)
    ended = created + timedelta(seconds=rng.randint(5, 600))
    output = None
    if status == "succeeded":
        # A few hundred bytes, like a short plan: every list poll carries it.
        output = {
            "summary": f"run {index}: {_GOALS[index % len(_GOALS)]}",
            "steps": [{"title": f"step {n}", "detail": "edit, test", "files": []} for n in (1, 2)],
            "risks": [],
        }
    return {
        "id": new_id("r"),
        "kind": kind,
        "status": status,
        "goal": f"{_GOALS[index % len(_GOALS)]} (#{index})",
        "workspace": "/srv/projects/shop",
        "agent": agent,
        "model": "openai/gpt-4o-mini",
        "output": output,
        "error": None if status == "succeeded" else f"{status} after {rng.randint(1, 40)} turns",
        "tokens_in": tokens_in,
        "tokens_out": tokens_out,
        "cost": round((tokens_in * 0.15 + tokens_out * 0.6) / 1e6, 6),
        "last_seq": rng.randint(5, 400),
        "created_at": created,
        "updated_at": ended,
        "started_at": created + timedelta(seconds=1),
        "finished_at": ended,
    }


def seed_runs(database_url: str, count: int, *, days: float = 30.0, seed: int = 7) -> None:
    """Write ``count`` finished runs, created over the last ``days``, into the store at
    ``database_url`` (migrated first), through the store's own repository functions: seconds
    for 10,000, where creating them through the daemon would run every one. Call it before the
    daemon starts."""
    from kyros.core.store import migrate
    from kyros.core.store import runs as runs_repo
    from kyros.core.store.engine import Store

    rng = random.Random(seed)
    now = datetime.now(UTC)
    span = timedelta(days=days)
    # Oldest first, evenly spread over the span.
    rows = [finished_run(i, now - span + span * (i / max(1, count)), rng) for i in range(count)]

    async def write() -> None:
        await migrate.upgrade(database_url)
        store = Store(database_url)
        try:
            for start in range(0, count, 1000):  # one transaction per thousand rows
                async with store.write() as conn:
                    for row in rows[start : start + 1000]:
                        await runs_repo.insert_run(conn, **row)
        finally:
            await store.close()

    asyncio.run(write())


# --- a program in a real terminal ----------------------------------------------------------


#: Escape sequences (CSI, and OSC ended by BEL or ST): stripped to look for text in raw output.
_ESCAPES = re.compile(
    rb"\x1b\[[0-9;?<>=$ ]*[@-~]"  # CSI
    rb"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"  # OSC
    rb"|\x1b[()][0-9A-Za-z]"  # character sets
)


class PtyScreen:
    """A program in a real pty (ptyprocess) whose output is kept with the time each read
    returned it, and replayed into a pyte screen to tell when what a user would see was there.

    Reading stays cheap while the program runs (a pyte screen costs milliseconds per frame, on
    the same CPUs as the program); the screen is rebuilt afterwards, chunk by chunk, so each
    time reported is the time of the read that completed the screen.
    """

    def __init__(
        self, argv: list[str], env: dict[str, str], *, rows: int = 40, cols: int = 120
    ) -> None:
        import pyte
        from ptyprocess import PtyProcess

        self.screen = pyte.Screen(cols, rows)
        self._stream = pyte.ByteStream(self.screen)
        #: (seconds since the spawn, bytes) per read.
        self.chunks: list[tuple[float, bytes]] = []
        self._fed = 0
        self._plain = bytearray()  # the output without escape sequences
        self.eof = False
        #: Taken right before the spawn: every time reported is counted from here.
        self.started = time.perf_counter()
        self.proc = PtyProcess.spawn(argv, env=env, dimensions=(rows, cols))

    def text(self) -> str:
        """The screen as replayed so far."""
        return "\n".join(self.screen.display)

    def pump(self, timeout: float) -> bool:
        """Keep what the program writes within ``timeout``; False if nothing came."""
        if self.eof:
            return False
        ready, _, _ = select.select([self.proc.fd], [], [], timeout)
        if not ready:
            return False
        try:
            data = os.read(self.proc.fd, 1 << 16)
        except OSError:  # EIO: the program closed the terminal
            data = b""
        if not data:
            self.eof = True
            return False
        self.chunks.append((time.perf_counter() - self.started, data))
        self._plain += _ESCAPES.sub(b"", data)
        return True

    def drain(self, seconds: float) -> None:
        """Keep reading for ``seconds`` (a program blocks when its terminal is not read)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self.eof:
            self.pump(min(0.1, max(0.0, deadline - time.monotonic())))

    def _replay_until(self, texts: list[str]) -> float | None:
        """Feed kept chunks to the screen until it shows every one of ``texts``: the time of
        the chunk that completed them (None when the kept output never does)."""
        if all(t in self.text() for t in texts) and self._fed:
            return self.chunks[self._fed - 1][0]
        while self._fed < len(self.chunks):
            at, data = self.chunks[self._fed]
            self._fed += 1
            self._stream.feed(data)
            if all(t in self.text() for t in texts):
                return at
        return None

    def wait_for(
        self, groups: list[list[str]], timeout: float = 60.0, quiet: float = 0.3
    ) -> list[float]:
        """Seconds from the spawn until the screen showed each group of texts, in order.

        Reads until the output holds every text (escape sequences aside) and then pauses for
        ``quiet`` seconds, and only then replays it into the screen.
        """
        deadline = time.monotonic() + timeout
        wanted = [t.encode() for group in groups for t in group]
        while time.monotonic() < deadline and not self.eof:
            if all(w in self._plain for w in wanted):
                break
            self.pump(0.05)
        while time.monotonic() < deadline and self.pump(quiet):
            pass
        times: list[float] = []
        for group in groups:
            at = self._replay_until(group)
            while at is None and time.monotonic() < deadline and not self.eof:
                self.drain(0.2)
                at = self._replay_until(group)
            if at is None:
                raise RuntimeError(f"the screen never showed {group}:\n{self.text()}")
            times.append(at)
        return times

    def close(self, quit_key: bytes = b"\x11", timeout: float = 15.0) -> int | None:
        """Type ``quit_key`` (ctrl+q), read until the program ends, and kill it if it does
        not; returns its exit status (None when it had to be killed)."""
        if self.proc.isalive() and not self.eof:
            with contextlib.suppress(OSError):
                self.proc.write(quit_key)
        deadline = time.monotonic() + timeout
        while self.proc.isalive() and time.monotonic() < deadline:
            if not self.pump(0.1) and self.eof:
                time.sleep(0.01)
        if self.proc.isalive():
            self.proc.terminate(force=True)
            status = None
        else:
            self.proc.wait()
            status = self.proc.exitstatus
        with contextlib.suppress(Exception):
            self.proc.close(force=True)  # the pty's file descriptor
        return status


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
