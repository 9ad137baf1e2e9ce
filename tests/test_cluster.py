"""Several daemons on one store: roles, the service registry, drain, expiry, refusals.

Real processes: each node is a `kyros daemon serve` with its own XDG dirs (its own socket and
state), all on one fresh PostgreSQL database; the refusals on SQLite use a real SQLite file.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import (
    FAST_QUEUE,
    Daemon,
    database,
    kyros_env,
    run_cli,
    start_daemon,
    xdg_dirs,
)

NODE_TIMING = {
    **FAST_QUEUE,
    "KYROS_NODE_HEARTBEAT_SECONDS": "0.5",
    "KYROS_NODE_EXPIRY_SECONDS": "2",
    "KYROS_POLL_SECONDS": "0.2",
}
EXPIRY, REAPER = 2.0, 0.5


def _json(out: subprocess.CompletedProcess[str]) -> Any:
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    return json.loads(out.stdout)


def _refused(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Start a node that must refuse to join: it exits by itself, non-zero."""
    proc = subprocess.run(
        [sys.executable, "-m", "kyros", "daemon", "serve", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode != 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc


@contextlib.contextmanager
def _node_env(url: str, **extra: str) -> Iterator[dict[str, str]]:
    with xdg_dirs() as env:
        yield kyros_env(env, KYROS_DATABASE_URL=url, **NODE_TIMING, **extra)


def _nodes(d: Daemon) -> dict[str, dict[str, Any]]:
    return {n["id"]: n for n in _json(d.cli("nodes", "ls", "--json"))["nodes"]}


def _wait(what: str, check: Any, timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout}s: {what}")


@pytest.mark.postgres
def test_an_api_node_and_two_workers_share_one_postgresql(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "README.md").write_text("# a tiny project\n")
    with (
        xdg_dirs() as first,
        database("postgresql", first) as url,
        _node_env(url) as api_env,
        _node_env(url) as w1_env,
        _node_env(url) as w2_env,
    ):
        started: list[Daemon] = []
        try:
            api = start_daemon(api_env, "--role", "api", "--node-id", "api-1")
            started.append(api)
            w1 = start_daemon(w1_env, "--role", "worker", "--node-id", "worker-1")
            started.append(w1)
            w2 = start_daemon(w2_env, "--role", "worker", "--node-id", "worker-2")
            started.append(w2)

            status = api.cli("daemon", "status")
            assert status.returncode == 0, status.stderr
            assert "node api-1, role api" in status.stdout
            # A worker serves no client API, and says where to go.
            on_worker = w1.cli("runs", "list", "--json")
            assert on_worker.returncode != 0
            assert "is a worker" in on_worker.stdout + on_worker.stderr

            nodes = _nodes(api)
            assert set(nodes) == {"api-1", "worker-1", "worker-2"}
            assert {n: (v["role"], v["state"]) for n, v in nodes.items()} == {
                "api-1": ("api", "up"),
                "worker-1": ("worker", "up"),
                "worker-2": ("worker", "up"),
            }
            assert nodes["api-1"]["capacity"] == 0
            assert all(v["load"] == 0 for v in nodes.values())
            assert nodes["worker-1"]["capacity"] > 0
            assert nodes["worker-1"]["capabilities"]["runs_jobs"] is True

            # A plan submitted to the api node runs on a worker; the CLI streams it to the end.
            out = api.cli(
                "run", "plan", "describe the project", "-w", str(workspace), "-m", "demo",
                "--jsonl", timeout=120,
            )  # fmt: skip
            assert out.returncode == 0, out.stderr
            followed = [json.loads(line) for line in out.stdout.splitlines()]
            seqs = [e["seq"] for e in followed]
            assert seqs == list(range(1, len(seqs) + 1))
            assert followed[-1]["type"] == "run.succeeded"
            run_id = followed[0]["run_id"]
            stored = api.cli("runs", "events", run_id, "--jsonl").stdout
            assert [json.loads(line)["seq"] for line in stored.splitlines()] == seqs
            shown = _json(api.cli("runs", "show", run_id, "--json"))
            assert shown["node"] in ("worker-1", "worker-2")
            text = api.cli("runs", "show", run_id)
            assert f"node: {shown['node']}" in text.stdout

            # Drain worker-2 through the api node: it claims nothing new.
            drained = _json(api.cli("nodes", "drain", "worker-2", "--json"))
            assert drained["state"] == "draining"
            time.sleep(1.0)  # > one heartbeat: worker-2 has learnt it
            assert (
                "draining"
                in _json(w2.cli("daemon", "status", "--json"))["ready"]["checks"]["workers"][
                    "detail"
                ]
            )

            # worker-1 killed: marked down within its lease's expiry plus one reaper pass.
            w1.stop(signal.SIGKILL)
            killed_at = time.monotonic()
            _wait(
                "worker-1 marked down",
                lambda: _nodes(api)["worker-1"]["state"] == "down",
                EXPIRY + REAPER + 3,
            )
            took = time.monotonic() - killed_at
            assert took <= EXPIRY + REAPER + 1.5, took
            down = _nodes(api)["worker-1"]
            assert "heartbeat expired" in (down["reason"] or "")

            # With worker-1 down and worker-2 draining, a new run waits in the queue.
            queued = _json(
                api.cli("run", "plan", "x", "-w", str(workspace), "-m", "demo", "--detach",
                        "--json")
            )  # fmt: skip
            time.sleep(2.0)
            waiting = _json(api.cli("runs", "show", queued["id"], "--json"))
            assert waiting["status"] == "queued"
            assert waiting["node"] is None

            # Clean stop of worker-2: deregistered at once.
            w2.stop()
            assert _nodes(api)["worker-2"]["state"] == "down"
            assert _nodes(api)["worker-2"]["reason"] == "stopped cleanly"

            missing = api.cli("nodes", "show", "no-such-node", "--json")
            assert missing.returncode == 2
            assert json.loads(missing.stdout)["error"]["code"] == "not_found"
        finally:
            for d in reversed(started):
                d.stop()


@pytest.mark.postgres
def test_a_second_node_with_a_live_nodes_id_is_refused() -> None:
    with (
        xdg_dirs() as first,
        database("postgresql", first) as url,
        _node_env(url) as a_env,
        _node_env(url) as b_env,
    ):
        a = start_daemon(a_env, "--role", "worker", "--node-id", "same")
        try:
            refused = _refused(b_env, "--role", "worker", "--node-id", "same")
            assert "node id 'same' is taken by a live node" in refused.stderr
            assert _nodes_via_store(url)["same"]["pid"] == a.proc.pid
        finally:
            a.stop()
        # Stopped cleanly, the id is free again.
        b = start_daemon(b_env, "--role", "worker", "--node-id", "same")
        b.stop()
        # Killed, and restarted on this host at once (a supervisor): its pid no longer runs,
        # so the id is taken back without waiting out the lease.
        c = start_daemon(a_env, "--role", "worker", "--node-id", "same")
        c.proc.kill()
        c.proc.wait(10)
        d = start_daemon(b_env, "--role", "worker", "--node-id", "same")
        try:
            assert _nodes_via_store(url)["same"]["pid"] == d.proc.pid
        finally:
            d.stop()


def _nodes_via_store(url: str) -> dict[str, dict[str, Any]]:
    from kyros.core.store import nodes as nodes_repo
    from kyros.core.store.engine import Store

    async def read() -> dict[str, dict[str, Any]]:
        store = Store(url)
        try:
            async with store.read() as conn:
                return {n["id"]: n for n in await nodes_repo.list_nodes(conn)}
        finally:
            await store.close()

    return asyncio.run(read())


def test_a_second_node_on_one_sqlite_file_is_refused(xdg: dict[str, str]) -> None:
    url = f"sqlite+aiosqlite:///{xdg['XDG_DATA_HOME']}/shared.db"
    with _node_env(url) as a_env, _node_env(url) as b_env:
        a = start_daemon(a_env)
        try:
            refused = _refused(b_env)
            assert "uses the SQLite database" in refused.stderr
            assert "PostgreSQL" in refused.stderr
            a.stop(signal.SIGKILL)  # the kernel drops its lock: no stale claim
            b = start_daemon(b_env)
            nodes = _nodes(b)
            assert len(nodes) == 2
            b.stop()
        finally:
            a.stop()
            run_cli(a_env, "daemon", "stop")


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [("api_version", "0", "API v0"), ("schema_revision", "0005", "schema 0005")],
)
def test_a_node_of_another_version_is_refused(
    xdg: dict[str, str], field: str, value: str, says: str
) -> None:
    """A live node of another API version or schema revision keeps this one out, before
    this one migrates anything."""
    url = f"sqlite+aiosqlite:///{xdg['XDG_DATA_HOME']}/k.db"
    with _node_env(url) as env:
        d = start_daemon(env, "--node-id", "new")
        d.stop()

        from datetime import timedelta

        from sqlalchemy import update

        from kyros.core.store.engine import Store
        from kyros.core.store.schema import service_registry, utcnow

        async def an_old_node_is_up() -> None:
            store = Store(url)
            try:
                async with store.write() as conn:
                    await conn.execute(
                        update(service_registry)
                        .where(service_registry.c.id == "new")
                        .values(
                            id="old",
                            state="up",
                            pid=1,
                            expires_at=utcnow() + timedelta(minutes=5),
                            **{field: value},
                        )
                    )
            finally:
                await store.close()

        asyncio.run(an_old_node_is_up())
        refused = _refused(env, "--node-id", "new")
        assert "refusing to join: node old" in refused.stderr
        assert says in refused.stderr
        assert "upgrade them together" in refused.stderr


def test_node_settings_are_checked(xdg: dict[str, str]) -> None:
    env = kyros_env(xdg, KYROS_NODE_HEARTBEAT_SECONDS="5", KYROS_NODE_EXPIRY_SECONDS="2")
    out = _refused(env)
    assert "node_expiry_seconds (2) must exceed node_heartbeat_seconds (5)" in out.stderr
    bad_role = _refused(kyros_env(xdg), "--role", "boss")
    assert "node_role" in bad_role.stderr
