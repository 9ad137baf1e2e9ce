"""Fixtures: isolated XDG dirs, a real database per backend (SQLite file / fresh PostgreSQL
database), an in-process core, and a real daemon process on a temporary Unix socket."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("LITELLM_OFFLINE_MODE", "true")
os.environ.pop("NO_COLOR", None)  # breaks Textual snapshots (STACK-NOTES)

from tests.support.postgres import PG_ADMIN_DSN, pg_admin
from tests.support.postgres import pg_problem as pg_problem_now

pytest_plugins = ["tests.support.fixtures"]

REQUIRE_SERVICES = os.environ.get("KYROS_REQUIRE_SERVICES") == "1"
REPO = Path(__file__).resolve().parents[1]


_PG_PROBLEM: list[str | None] = []


def pg_problem() -> str | None:
    if not _PG_PROBLEM:
        _PG_PROBLEM.append(pg_problem_now())
    return _PG_PROBLEM[0]


def require_pg() -> None:
    problem = pg_problem()
    if problem:
        if REQUIRE_SERVICES:
            pytest.fail(
                f"PostgreSQL is required (KYROS_REQUIRE_SERVICES=1) but unreachable: {problem}"
            )
        pytest.skip(f"PostgreSQL unreachable at {PG_ADMIN_DSN}: {problem}")


@contextlib.contextmanager
def xdg_dirs() -> Iterator[dict[str, str]]:
    """Environment variables that put every kyros path under a fresh temp dir."""
    # Unix socket paths are limited to 108 bytes: keep the runtime dir short.
    base = Path(f"/tmp/ky-{secrets.token_hex(4)}")
    base.mkdir(mode=0o700)
    env = {
        "XDG_RUNTIME_DIR": str(base / "run"),
        "XDG_DATA_HOME": str(base / "data"),
        "XDG_STATE_HOME": str(base / "state"),
        "XDG_CONFIG_HOME": str(base / "config"),
        "XDG_CACHE_HOME": str(base / "cache"),
    }
    (base / "run").mkdir(mode=0o700)
    try:
        yield env
    finally:
        shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def database(kind: str, xdg: dict[str, str]) -> Iterator[str]:
    """A fresh, empty database: a SQLite file, or a new PostgreSQL database dropped after."""
    if kind == "sqlite":
        yield f"sqlite+aiosqlite:///{xdg['XDG_DATA_HOME']}/kyros-test.db"
        return
    require_pg()
    name = f"kyros_t_{secrets.token_hex(6)}"
    asyncio.run(pg_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    finally:
        asyncio.run(pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture
def xdg() -> Iterator[dict[str, str]]:
    with xdg_dirs() as env:
        yield env


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, xdg: dict[str, str]) -> Iterator[str]:
    """A fresh, empty database on each backend."""
    with database(request.param, xdg) as url:
        yield url


def loaded_for(env: dict[str, str], **overrides: Any) -> Any:
    from kyros import settings

    return settings.load(overrides, env=env)


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Any]:
    """A migrated store on this test's database (SQLite or PostgreSQL)."""
    from kyros.core.store import migrate
    from kyros.core.store.engine import Store

    await migrate.upgrade(db_url)
    s = Store(db_url)
    yield s
    await s.close()


@pytest.fixture
async def core(xdg: dict[str, str], db_url: str) -> AsyncIterator[Any]:
    """An in-process, started core on a fresh database, with fast queue timings."""
    from kyros.core.app import Core

    loaded = loaded_for(
        xdg,
        database_url=db_url,
        heartbeat_seconds=0.2,
        reaper_seconds=0.2,
        lease_seconds=2.0,
        retry_base_seconds=0.05,
        poll_seconds=0.2,
    )
    c = Core(loaded)
    await c.start(warm_backend=False)
    try:
        yield c
    finally:
        await c.stop()


def kyros_env(xdg: dict[str, str], **extra: str) -> dict[str, str]:
    """The environment of a kyros process in a test: the temp dirs, no provider keys."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("KYROS_") and not k.endswith("_API_KEY")
    }
    env.update(xdg)
    env.update(extra)
    # Like a user with this virtualenv active: `python` in an agent's command is this one.
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
    env["PYTHONPATH"] = str(REPO)  # tests.support plugins are importable by the daemon
    return env


def run_cli(
    env: dict[str, str], *args: str, input: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kyros", *args],
        env=env,
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@dataclass
class Daemon:
    """A real `kyros daemon serve` process on a temporary socket."""

    env: dict[str, str]
    proc: subprocess.Popen[bytes]
    socket: Path
    log: Path

    def client(self) -> Any:
        from kyros.client import Client
        from kyros.client.discovery import DaemonTarget

        return Client(DaemonTarget(base_url="http://kyros", uds=str(self.socket), local=False))

    def cli(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return run_cli(self.env, *args, **kwargs)

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                with self.client() as c:
                    if c.ready().get("ready"):
                        return
            except Exception:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"daemon not ready in {timeout}s:\n{self.log.read_text()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


def start_daemon(env: dict[str, str], *args: str) -> Daemon:
    from kyros import paths

    p = paths.resolve(env)
    p.state_dir.mkdir(parents=True, exist_ok=True)
    log = p.state_dir / f"test-daemon-{secrets.token_hex(3)}.log"
    with log.open("ab") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kyros", "daemon", "serve", *args],
            env=env,
            stdout=fh,
            stderr=fh,
            start_new_session=True,
        )
    d = Daemon(env=env, proc=proc, socket=p.socket, log=log)
    try:
        d.wait_ready()
    except BaseException:
        d.stop(signal.SIGKILL)  # never leave a half-started daemon behind
        raise
    return d


FAST_QUEUE = {
    "KYROS_LEASE_SECONDS": "3",
    "KYROS_HEARTBEAT_SECONDS": "0.5",
    "KYROS_REAPER_SECONDS": "0.5",
    "KYROS_RETRY_BASE_SECONDS": "0.1",
}


@pytest.fixture
def daemon_env(xdg: dict[str, str], db_url: str) -> dict[str, str]:
    return kyros_env(xdg, KYROS_DATABASE_URL=db_url, **FAST_QUEUE)


@pytest.fixture
def daemon(daemon_env: dict[str, str]) -> Iterator[Daemon]:
    """A daemon of this test's own (for tests that kill, restart or reconfigure it)."""
    d = start_daemon(daemon_env)
    try:
        yield d
    finally:
        d.stop()


@pytest.fixture(scope="module", params=BACKENDS)
def shared_daemon(request: pytest.FixtureRequest) -> Iterator[Daemon]:
    """One daemon per test module and backend: tests that only add runs share it, which spares
    a start-up and a litellm import (~3 s of CPU) per test."""
    with xdg_dirs() as env, database(request.param, env) as url:
        d = start_daemon(kyros_env(env, KYROS_DATABASE_URL=url, **FAST_QUEUE))
        try:
            yield d
        finally:
            d.stop()
