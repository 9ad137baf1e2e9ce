"""This daemon as a node of the service registry: joining, heartbeats, drain, reaping the dead.

A node joins when its core starts: it refuses to join a database whose live nodes speak
another API version or schema revision (checked before this node migrates anything), refuses
an id a live node holds, and on SQLite refuses to be the second node at all (an ``flock`` on a
file beside the database: the kernel drops it when the process dies, however it dies, so a
``kill -9`` never leaves a stale claim, and no clock or pid is trusted). Then it heartbeats
every ``node_heartbeat_seconds``; every ``reaper_seconds`` it marks ``down`` the nodes whose
lease expired by the database's clock (ADR 0028). A drain, asked here or on any node, is
learnt at the next heartbeat: the pool stops claiming and lets its running jobs finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import secrets
import shutil
import socket
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from sqlalchemy.engine import make_url

from kyros import API_VERSION, __version__
from kyros.core.jobs.pool import WorkerPool, pid_alive
from kyros.core.store import nodes as nodes_repo
from kyros.core.store import revision
from kyros.core.store.engine import Store
from kyros.errors import Conflict, KyrosError, NotFound, StoreUnavailable

log = logging.getLogger("kyros.registry")

ROLES = ("all", "api", "worker")
#: The first schema revision with the ``service_registry`` table.
REGISTRY_REVISION = "0006"


def default_node_id(state_dir: Path) -> str:
    """This machine's name and a suffix made once per state dir (kept in ``node-id``), so a
    restarted daemon comes back as the same node and two daemons of one machine differ."""
    path = state_dir / "node-id"
    with contextlib.suppress(OSError):
        kept = path.read_text().strip()
        if kept:
            return kept
    host = "".join(c if c.isalnum() or c in "._-" else "-" for c in socket.gethostname())
    made = f"{(host or 'node')[:100].strip('.-_') or 'node'}-{secrets.token_hex(3)}"
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.write_text(made + "\n")
    return made


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL (None for PostgreSQL or an in-memory database)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    if not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database).resolve()


class NodeRegistry:
    """This daemon's row in ``service_registry`` and the loops that keep it true."""

    def __init__(
        self,
        store: Store,
        pool: WorkerPool,
        *,
        node_id: str,
        role: str,
        url: str | None,
        heartbeat_seconds: float,
        expiry_seconds: float,
        reaper_seconds: float,
        capabilities: Callable[[], dict[str, Any]],
    ) -> None:
        if role not in ROLES:
            raise ValueError(f"unknown node role {role!r}; roles: {', '.join(ROLES)}")
        self.store = store
        self.pool = pool
        self.node_id = node_id
        self.role = role
        self.url = url
        self.heartbeat_seconds = heartbeat_seconds
        self.expiry_seconds = expiry_seconds
        self.reaper_seconds = reaper_seconds
        self.capabilities = capabilities
        self.host = socket.gethostname()
        self.incarnation: int | None = None
        self.state: str | None = None
        self._lock: IO[str] | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def runs_jobs(self) -> bool:
        """Whether this node claims jobs (``all`` and ``worker``)."""
        return self.role != "api"

    # --- joining ----------------------------------------------------------------------------

    async def check_compatible(self) -> None:
        """Refuse to join (``Conflict``) a database this node cannot share: one migrated past
        this kyros, or one whose live nodes speak another API version or schema revision.
        Runs before this node migrates, so it never upgrades a schema under older nodes."""
        async with self.store.read() as conn:
            current = await revision.current(conn)
            if current is None or current < REGISTRY_REVISION:
                return  # no registry yet: no node of this kind has joined
            if current > revision.HEAD:
                raise Conflict(
                    f"refusing to join: the database is at schema revision {current}, newer "
                    f"than this kyros {__version__} knows ({revision.HEAD}); upgrade kyros on "
                    "this machine",
                    code="node_version_mismatch",
                )
            live = await nodes_repo.live_nodes(conn, postgres=self.store.is_postgres)
        for node in live:
            if node["id"] == self.node_id:
                continue  # judged by join(): same id
            if node["api_version"] != API_VERSION or node["schema_revision"] != revision.HEAD:
                raise Conflict(
                    f"refusing to join: node {node['id']} ({node['role']} on {node['host']}, "
                    f"kyros {node['version']}, API v{node['api_version']}, schema "
                    f"{node['schema_revision']}) is up on this database, and this node speaks "
                    f"API v{API_VERSION} with schema {revision.HEAD}. The nodes of one "
                    "database must match: upgrade them together (stop the old ones first)",
                    code="node_version_mismatch",
                )

    async def join(self) -> None:
        """Take the SQLite node lock (if SQLite), then register as ``up``."""
        path = sqlite_file(self.store.url)
        if path is not None:
            self._lock = self._lock_sqlite(path)
        try:
            await self._register()
        except BaseException:
            self._unlock()
            raise
        log.info("node %s joined as %s (incarnation %s)", self.node_id, self.role, self.incarnation)

    def _lock_sqlite(self, db: Path) -> IO[str]:
        path = db.with_name(db.name + ".node-lock")
        handle = path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder: dict[str, Any] = {}
            with contextlib.suppress(OSError, ValueError):
                handle.seek(0)
                holder = json.loads(handle.read() or "{}")
            handle.close()
            raise Conflict(
                f"refusing to start: another kyros node (node {holder.get('node', '?')}, pid "
                f"{holder.get('pid', '?')}) uses the SQLite database {db}. SQLite serves one "
                "node; run several nodes on one PostgreSQL database "
                "(KYROS_DATABASE_URL=postgresql+asyncpg://…, see docs/cluster.md)",
                code="sqlite_single_node",
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"node": self.node_id, "pid": os.getpid()}))
        handle.flush()
        return handle

    def _unlock(self) -> None:
        if self._lock is not None:
            self._lock.close()  # closing the descriptor drops the flock
            self._lock = None

    def _row(self) -> dict[str, Any]:
        return {
            "id": self.node_id,
            "role": self.role,
            "host": self.host,
            "pid": os.getpid(),
            "version": __version__,
            "api_version": API_VERSION,
            "schema_revision": revision.HEAD,
            "url": self.url,
            "capabilities": self.capabilities(),
            "capacity": self._capacity(),
            "load": self.pool.busy,
        }

    def _capacity(self) -> int:
        return self.pool.config.workers if self.runs_jobs else 0

    async def _register(self) -> None:
        postgres = self.store.is_postgres
        async with self.store.write() as conn:
            now = await nodes_repo.clock(conn, postgres=postgres)
            existing = await nodes_repo.get(conn, self.node_id, lock=True)
            if existing and nodes_repo.is_live(existing, now) and not self._gone(existing):
                age = max(0.0, (now - existing["last_heartbeat"]).total_seconds())
                raise Conflict(
                    f"refusing to start: node id {self.node_id!r} is taken by a live node "
                    f"({existing['role']} on {existing['host']}, pid {existing['pid']}, last "
                    f"heartbeat {age:.0f}s ago). Give this daemon another id (--node-id or "
                    "KYROS_NODE_ID), or stop that one; a node that died frees its id when its "
                    f"lease expires (node_expiry_seconds, {self.expiry_seconds:g}s)",
                    code="node_id_taken",
                )
            self.incarnation = await nodes_repo.register(
                conn, self._row(), expiry_seconds=self.expiry_seconds, postgres=postgres
            )
        self.state = nodes_repo.UP

    def _gone(self, row: dict[str, Any]) -> bool:
        """Whether the live-looking holder of our id is known to be dead: a pid of this host
        that no longer runs. A daemon restarted after a crash (a supervisor's ``kill -9`` and
        restart) takes its id back at once instead of waiting out the lease; a holder on
        another host is only freed by the lease's expiry. The default id carries a suffix
        kept in the state dir, so two machines of one host name (containers) do not share one
        unless told to (``--node-id``; ADR 0028)."""
        if row["host"] != self.host:
            return False
        pid = int(row["pid"])
        return pid != os.getpid() and not pid_alive(pid)

    # --- loops ------------------------------------------------------------------------------

    def start(self) -> None:
        """Start heartbeating and reaping (after :meth:`join`)."""
        self._tasks = [
            asyncio.create_task(self._heartbeat_loop(), name="kyros-node-heartbeat"),
            asyncio.create_task(self._reaper_loop(), name="kyros-node-reaper"),
        ]

    @property
    def alive(self) -> bool:
        """Whether the heartbeat and reaper loops run."""
        return bool(self._tasks) and not any(t.done() for t in self._tasks)

    async def heartbeat(self) -> None:
        """Renew this node's lease once; learn a drain asked elsewhere; register again if the
        row was reaped meanwhile (this node hung or lost the database longer than its lease)."""
        assert self.incarnation is not None
        async with self.store.write() as conn:
            state = await nodes_repo.heartbeat(
                conn,
                self.node_id,
                self.incarnation,
                load=self.pool.busy,
                capacity=self._capacity(),
                expiry_seconds=self.expiry_seconds,
                postgres=self.store.is_postgres,
            )
        if state is None:
            log.warning(
                "node %s: the registry marked this node down (its lease expired); joining again",
                self.node_id,
            )
            draining = self.state == nodes_repo.DRAINING
            await self._register()
            if draining:  # a drain outlives a lapse: re-assert it
                await self.drain(self.node_id)
            return
        if state == nodes_repo.DRAINING and self.state != nodes_repo.DRAINING:
            log.warning("node %s: draining; claiming no new jobs", self.node_id)
            self.pool.claiming = False
        self.state = state

    async def reap(self) -> list[str]:
        """Mark down the nodes whose lease expired; returns their ids."""
        async with self.store.write() as conn:
            dead = await nodes_repo.reap(conn, postgres=self.store.is_postgres)
        for node_id in dead:
            log.warning("node %s: heartbeat expired; marked down", node_id)
        return dead

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_seconds)
            try:
                await self.heartbeat()
            except StoreUnavailable as exc:
                log.warning("node heartbeat failed: %s", exc)
            except KyrosError as exc:  # e.g. our id taken while we were reaped
                log.error("node %s cannot rejoin the registry: %s", self.node_id, exc.message)

    async def _reaper_loop(self) -> None:
        while True:
            await asyncio.sleep(self.reaper_seconds)
            try:
                await self.reap()
            except StoreUnavailable as exc:
                log.warning("node reaper: store unavailable: %s", exc)

    async def stop(self) -> None:
        """Stop the loops and deregister (state ``down``); drop the SQLite node lock."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self.incarnation is not None:
            with contextlib.suppress(StoreUnavailable):
                async with self.store.write() as conn:
                    await nodes_repo.set_state(
                        conn,
                        self.node_id,
                        nodes_repo.DOWN,
                        postgres=self.store.is_postgres,
                        incarnation=self.incarnation,
                        reason="stopped cleanly",
                    )
            self.state = nodes_repo.DOWN
        self._unlock()

    # --- the API's view ---------------------------------------------------------------------

    async def list(self) -> tuple[list[dict[str, Any]], datetime]:
        """Every node that joined this database, and the registry's clock now."""
        async with self.store.read() as conn:
            found = await nodes_repo.list_nodes(conn)
            now = await nodes_repo.clock(conn, postgres=self.store.is_postgres)
        return found, now

    async def get(self, node_id: str) -> tuple[dict[str, Any], datetime]:
        """One node (``NotFound`` for an id no node ever had), and the registry's clock."""
        async with self.store.read() as conn:
            node = await nodes_repo.get(conn, node_id)
            now = await nodes_repo.clock(conn, postgres=self.store.is_postgres)
        if node is None:
            raise NotFound(f"no node {node_id!r} in the registry: see `kyros nodes ls`")
        return node, now

    async def drain(self, node_id: str) -> tuple[dict[str, Any], datetime]:
        """Ask ``node_id`` to claim no new jobs and finish its running ones (state
        ``draining``). This node stops at once; another learns it at its next heartbeat."""
        async with self.store.write() as conn:
            node = await nodes_repo.get(conn, node_id, lock=True)
            if node is None:
                raise NotFound(f"no node {node_id!r} in the registry: see `kyros nodes ls`")
            if node["state"] == nodes_repo.DOWN:
                raise Conflict(
                    f"node {node_id} is down ({node.get('reason') or 'stopped'}): nothing to drain",
                    code="node_down",
                )
            if node["state"] == nodes_repo.UP:
                node = (
                    await nodes_repo.set_state(
                        conn, node_id, nodes_repo.DRAINING, postgres=self.store.is_postgres
                    )
                    or node
                )
            now = await nodes_repo.clock(conn, postgres=self.store.is_postgres)
        if node_id == self.node_id:
            self.pool.claiming = False
            self.state = nodes_repo.DRAINING
        return node, now


def capabilities(
    *,
    role: str,
    models: list[str],
    key_vars: list[str],
    workspace_roots: list[str],
) -> dict[str, Any]:
    """What a node offers, as the registry shows it: the models it is configured for, the
    providers it holds keys for (names of variables, never keys), the workspace roots it can
    see, whether a sandbox (bwrap) is installed, and whether it runs terminals."""
    providers = sorted(
        {v.removesuffix("_API_KEY").lower() for v in key_vars if v.endswith("_API_KEY")}
    )
    return {
        "models": sorted(set(models)),
        "providers": providers,
        "workspace_roots": workspace_roots,
        "sandbox": shutil.which("bwrap") is not None,
        "terminals": True,
        "runs_jobs": role != "api",
    }
