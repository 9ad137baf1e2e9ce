"""The core assembled: store, migrations, event bus, worker pool, run services, AI backend.

The daemon builds one :class:`Core`, starts it before it accepts connections and stops it after
the last one closed. Everything here is also usable in-process (tests, benchmarks).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import logging
import os
import secrets
import threading
from datetime import timedelta
from typing import Any

from kyros.core.agents import AgentService
from kyros.core.ai import probe
from kyros.core.ai.backend import LLMBackend
from kyros.core.ai.catalogue import Catalogue
from kyros.core.ai.choice import choose, configured_role_model
from kyros.core.ai.keys import LiveKeys, credentials_for
from kyros.core.ai.router import RoutePolicy, Router
from kyros.core.bus import EventBus
from kyros.core.jobs.handlers import HandlerRegistry, register_builtin
from kyros.core.jobs.pool import PoolConfig, WorkerPool
from kyros.core.live_settings import LiveSettings
from kyros.core.registry import NodeRegistry, capabilities, default_node_id
from kyros.core.runs.conversations import ThreadService
from kyros.core.runs.critic import CriticExecutor
from kyros.core.runs.implement import ImplementExecutor
from kyros.core.runs.pipeline import PipelineExecutor
from kyros.core.runs.plan import PlanExecutor
from kyros.core.runs.service import RunService
from kyros.core.runs.worktrees import SWEEP_SECONDS, Worktrees
from kyros.core.store import agents as agents_repo
from kyros.core.store import jobs as jobs_repo
from kyros.core.store import ledger, revision
from kyros.core.store.engine import Store
from kyros.core.store.schema import utcnow
from kyros.core.terminals.manager import TerminalManager
from kyros.credentials import key_fingerprint
from kyros.errors import KyrosError, NotFound, UsageError
from kyros.settings import ROLES, Loaded
from kyros.settings.model import Settings

log = logging.getLogger("kyros.core")

#: How often committed SQLite WAL pages are checkpointed into the database file.
CHECKPOINT_SECONDS = 2.0


def _resolve(future: asyncio.Future[None], exc: BaseException | None) -> None:
    if future.done():
        return
    if exc is None:
        future.set_result(None)
    else:
        future.set_exception(exc)


def _default_backend() -> LLMBackend:
    # Deferred: importing litellm costs ~3 s and ~220 MB; only model calls need it.
    from kyros.core.ai import demo
    from kyros.core.ai.litellm_backend import LiteLLMBackend, ScriptedProvider, register_scripted

    register_scripted("demo", ScriptedProvider(demo.reply, delay=0.01))
    return LiteLLMBackend()


class Core:
    """One daemon's orchestration core."""

    def __init__(
        self,
        loaded: Loaded,
        *,
        backend: LLMBackend | None = None,
        migrate_on_start: bool = True,
        autostarted: bool = False,
        node_url: str | None = None,
    ) -> None:
        self.loaded = loaded
        s = loaded.settings
        self.started_at = utcnow()
        #: Started in the background by a client (not by the user's `kyros daemon serve`):
        #: a client may then restart it for the user while it is idle (ADR 0017).
        self.autostarted = autostarted
        # Keys are compared by keyed fingerprints under a salt of this process (ADR 0017).
        self._key_salt = secrets.token_hex(16)
        self.store = Store(loaded.database_url)
        self.bus = EventBus()
        self.registry = HandlerRegistry()
        self.pool = WorkerPool(
            self.store,
            self.registry,
            self.bus,
            PoolConfig(
                workers=s.workers,
                lease_seconds=s.lease_seconds,
                heartbeat_seconds=s.heartbeat_seconds,
                reaper_seconds=s.reaper_seconds,
                poll_seconds=s.poll_seconds,
                max_stalls=s.max_stalls,
                retry_base_seconds=s.retry_base_seconds,
                retry_max_seconds=s.retry_max_seconds,
                shutdown_grace_seconds=s.shutdown_grace_seconds,
            ),
        )
        node_id = s.node_id or default_node_id(loaded.paths.state_dir)
        self.pool.node_id = node_id
        self.nodes = NodeRegistry(
            self.store,
            self.pool,
            node_id=node_id,
            role=s.node_role,
            url=s.node_url or node_url or f"unix://{loaded.paths.socket}",
            heartbeat_seconds=s.node_heartbeat_seconds,
            expiry_seconds=s.node_expiry_seconds,
            reaper_seconds=s.reaper_seconds,
            capabilities=self._capabilities,
        )
        self.credentials = credentials_for(loaded)
        self.keys = LiveKeys(self.credentials.provider_keys, loaded.provider_keys)
        self.catalogue = Catalogue(s, self.keys, refresh=self.keys.refresh)
        self.router = Router(RoutePolicy.from_settings(s))
        self.runs = RunService(
            store=self.store,
            bus=self.bus,
            catalogue=self.catalogue,
            router=self.router,
            max_attempts=s.max_attempts,
            wake=self.pool.wake,
            cancel_local=self.pool.cancel_local,
        )
        self.live = LiveSettings(loaded, self._apply_settings)
        self.runs.settings_check = self.live.require_usable
        self.registry.give_up = self.runs.give_up
        self.registry.lost = self.runs.attempt_lost
        self.terminals = TerminalManager(
            scrollback=s.terminal_scrollback, inherit_env=s.terminal_env
        )
        self._backend = backend
        self._backend_lock = threading.Lock()
        self.migrate_on_start = migrate_on_start
        self.backend_error: str | None = None
        register_builtin(self.registry)
        self.agents = AgentService(self.store)
        self.threads = ThreadService(self.store)
        self.registry.register("plan", PlanExecutor(self.runs, self.backend))
        self.registry.register(
            "implement",
            ImplementExecutor(
                self.runs,
                self.backend,
                agents=self.agents,
                sandboxes=loaded.paths.sandboxes,
                terminals=self.terminals,
            ),
        )
        self.registry.register("critic", CriticExecutor(self.runs, self.backend))
        self.registry.register(
            "pipeline", PipelineExecutor(self.runs, self.backend, agents=self.agents)
        )
        self.worktrees = Worktrees(self.runs, loaded.paths.sandboxes, s.worktree_retention_days)
        for module in s.plugins:
            self._load_plugin(module)
        for kind, factory in self.registry.run_kinds.items():
            self.registry.register(kind, factory(self.runs, self.backend))
            self.runs.plugin_kinds.add(kind)

    def _apply_settings(self, s: Settings) -> None:
        """A changed config file's settings, applied where runs read them."""
        self.catalogue.settings = s
        self.router.policy = RoutePolicy.from_settings(s)
        self.runs.max_attempts = s.max_attempts

    @property
    def settings(self) -> Settings:
        """The settings in effect now (the config file re-read when it changed)."""
        self.live.check()
        return self.live.effective

    async def daemon_view(self) -> dict[str, Any]:
        """This daemon as `kyros config show` and a starting run compare it with the client:
        who started it and when, whether it is idle, its config file, and a keyed fingerprint
        of each provider key it holds (never a key)."""
        self.live.check()
        async with self.store.read() as conn:
            counts = await jobs_repo.counts(conn)
        queued, running = counts.get("queued", 0), counts.get("running", 0)
        terminals = sum(1 for t in self.terminals.list() if t.running)
        busy = [
            f"{n} {what}"
            for n, what in ((running, "running job(s)"), (queued, "queued job(s)"))
            if n
        ]
        if terminals:
            busy.append(f"{terminals} terminal(s)")
        await self.keys.refresh()
        keys = []
        for var, key in sorted(self.keys().items()):
            keys.append(
                {
                    "env_var": var,
                    "source": "environment"
                    if self.loaded.provider_keys.get(var) == key
                    else "stored key",
                    "fingerprint": key_fingerprint(key, self._key_salt),
                }
            )
        return {
            "pid": os.getpid(),
            "started_at": self.started_at,
            "autostarted": self.autostarted,
            "idle": not busy,
            "activity": ", ".join(busy) or "idle",
            "config_file": str(self.loaded.paths.config_file),
            "config_read_at": self.live.read_at,
            "config_error": self.live.error,
            "restart_needed": self.live.restart_needed,
            "key_salt": self._key_salt,
            "keys": keys,
        }

    def _capabilities(self) -> dict[str, Any]:
        s = self.loaded.settings
        return capabilities(
            role=s.node_role,
            models=[*s.models, *([s.model] if s.model else [])],
            key_vars=list(self.keys()),
            workspace_roots=["/"],  # every path of this machine; routing by root comes later
        )

    def _load_plugin(self, name: str) -> None:
        try:
            module = importlib.import_module(name)
            module.register(self.registry)
        except Exception as exc:
            raise UsageError(f"plugin {name!r} failed to load: {exc}") from exc

    def backend(self) -> LLMBackend:
        """The AI backend, created on first use (blocking: call it in a thread)."""
        with self._backend_lock:
            if self._backend is None:
                self._backend = _default_backend()
            return self._backend

    async def start(self, *, warm_backend: bool = True) -> None:
        # Before any migration: never upgrade a schema under live nodes of another version.
        await self.nodes.check_compatible()
        if self.migrate_on_start:
            async with self.store.read() as conn:
                current = await revision.current(conn)
            if current != revision.HEAD:
                # Deferred: Alembic is only needed when there is something to apply.
                from kyros.core.store import migrate

                await migrate.upgrade(self.loaded.database_url)
        async with self.store.write() as conn:
            await agents_repo.ensure_builtin(conn)
            # Reservations of calls a dead daemon left in flight count as spent.
            stale = await ledger.release_stale(
                conn, timedelta(seconds=self.loaded.settings.deadline_total + 60)
            )
        if stale:
            log.warning("settled %d model call(s) left in flight by an earlier daemon", stale)
        await self.keys.refresh()
        await self.nodes.join()
        try:
            await self.pool.void_dead_local_leases()
        except BaseException:
            await self.nodes.stop()
            raise
        self.pool.start(run_jobs=self.nodes.runs_jobs)
        self.nodes.start()
        self._maintenance = asyncio.create_task(self._maintain(), name="kyros-store-maintenance")
        if warm_backend:
            self._warm = asyncio.create_task(self._warm_backend(), name="kyros-warm-ai")

    async def _warm_backend(self) -> None:
        # A daemon thread, not the default executor: asyncio.run() waits for executor threads
        # at exit, and a daemon stopped during the ~3 s litellm import would wait for it.
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def work() -> None:
            try:
                self.backend()
                loop.call_soon_threadsafe(_resolve, done, None)
            except Exception as exc:
                loop.call_soon_threadsafe(_resolve, done, exc)

        threading.Thread(target=work, name="kyros-warm-ai", daemon=True).start()
        try:
            await done
        except Exception as exc:  # reported by /readyz; a run would fail with the same error
            self.backend_error = f"{type(exc).__name__}: {exc}"
            log.error("AI backend failed to load: %s", self.backend_error)
        # What start-up built (litellm alone: ~475,000 objects) lives as long as the daemon.
        # Every full collection walked it again, freeing nothing: 150-260 ms during which no
        # terminal byte, event or request moved (measured under a terminal flood, 2 cores).
        # Frozen, it is left out; cyclic garbage is collected first, as frozen objects never are.
        gc.collect()
        gc.freeze()

    async def _maintain(self) -> None:
        loop = asyncio.get_running_loop()
        sweep_at = loop.time() + CHECKPOINT_SECONDS  # soon after start, then hourly
        while True:
            await asyncio.sleep(CHECKPOINT_SECONDS)
            try:
                await self.store.checkpoint()
            except KyrosError as exc:
                log.warning("store checkpoint failed: %s", exc.message)
            if loop.time() >= sweep_at:
                sweep_at = loop.time() + SWEEP_SECONDS
                try:
                    await self.worktrees.sweep()
                except Exception as exc:  # a git failure must not stop the checkpoints
                    log.warning("removing old worktrees failed: %s", exc)

    async def stop(self) -> None:
        # Jobs first: a run's command keeps its terminal through the grace period, so a
        # shutdown is never reported to the model as a command killed by signal 15.
        await self.pool.stop()
        await self.nodes.stop()
        await self.terminals.close_all()
        close = getattr(self._backend, "aclose", None)  # the provider connections it kept
        if close is not None:
            with contextlib.suppress(Exception):
                await close()
        self._maintenance.cancel()
        with contextlib.suppress(asyncio.CancelledError, KyrosError):
            await self._maintenance
            await self.store.checkpoint()
        await self.store.close()

    async def readiness(self) -> dict[str, dict[str, Any]]:
        checks: dict[str, dict[str, Any]] = {}
        try:
            await self.store.ping()
            checks["store"] = {"ok": True, "detail": self.store.dialect}
        except KyrosError as exc:
            checks["store"] = {"ok": False, "detail": exc.message}
        try:
            async with self.store.read() as conn:
                current = await revision.current(conn)
            checks["migrations"] = {
                "ok": current == revision.HEAD,
                "detail": f"at {current}, newest {revision.HEAD}",
            }
        except KyrosError as exc:
            checks["migrations"] = {"ok": False, "detail": exc.message}
        if self.nodes.runs_jobs:
            checks["workers"] = {
                "ok": self.pool.alive,
                "detail": f"{self.pool.busy}/{self.pool.config.workers} busy"
                + ("; draining" if not self.pool.claiming else "")
                + (f"; last error: {self.pool.last_error}" if self.pool.last_error else ""),
            }
        else:
            checks["workers"] = {"ok": self.pool.alive, "detail": "none: an api node runs no jobs"}
        checks["node"] = {
            "ok": self.nodes.alive,
            "detail": f"{self.nodes.node_id} ({self.nodes.role}, {self.nodes.state})",
        }
        checks["ai"] = self._backend_check()
        return checks

    def _backend_check(self) -> dict[str, Any]:
        # Loading does not make the daemon unready: runs queue until the backend is there, and
        # terminals and the API need none of it. The import holds the GIL for stretches of up
        # to a few hundred ms, so "loaded" also tells when the loop answers at its best.
        if self.backend_error is not None:
            return {"ok": False, "detail": f"failed to load: {self.backend_error}"}
        if self._backend is None:
            return {"ok": True, "detail": "loading"}
        return {"ok": True, "detail": "loaded"}

    async def jobs(self, *, limit: int, status: str | None) -> list[dict[str, Any]]:
        async with self.store.read() as conn:
            return await jobs_repo.list_jobs(conn, limit=limit, status=status)

    async def agent_status(self) -> list[dict[str, Any]]:
        """Every agent with its live status: busy (with its run), paused, offline (the model a
        run of it would use cannot be called; ``problem`` says why) or idle."""
        agents = await self.agents.list()
        active = await self.runs.list_runs(limit=500, status="running")
        waiting = await self.runs.list_runs(limit=500, status="needs_approval")
        current: dict[str, str] = {}
        for run in active + waiting:
            if run["kind"] != "pipeline":
                current.setdefault(run.get("agent") or "", run["id"])
        out = []
        for agent in agents:
            run_id = current.get(agent["name"])
            if run_id:
                status = "busy"
            elif agent["paused"]:
                status = "paused"
            else:
                status = "idle"
            model, problem = self._agent_model(agent)
            if not run_id and not agent["paused"]:
                status = "offline" if problem else "idle"
            out.append(
                {
                    **agent,
                    "model": model,
                    "status": status,
                    "current_run": run_id,
                    "problem": problem,
                }
            )
        return out

    def _agent_model(self, agent: dict[str, Any]) -> tuple[str | None, str | None]:
        """The model a run of ``agent`` would use (chosen as for a run: its own, then its
        role's, then the default), or None and why it cannot be called."""
        role = agent["role"] if agent["role"] in ROLES else "implement"
        try:
            choice = choose(self.catalogue, role=role, agent_model=agent["model"])
        except KyrosError as exc:
            wanted = agent["model"] or configured_role_model(self.catalogue, role)
            return wanted or self.loaded.settings.model, exc.message.splitlines()[0]
        return choice.resolved.name, None

    async def _backend_or_none(self) -> LLMBackend | None:
        try:
            return await asyncio.to_thread(self.backend)
        except Exception as exc:  # the listing still works, without the price list
            self.backend_error = f"{type(exc).__name__}: {exc}"
            return None

    async def models(self) -> list[dict[str, Any]]:
        """Every model kyros could use (`kyros models list`): the catalogue's entries with
        limits and prices from the provider's price list, and each one's cooldown (or None)."""
        self.live.check()
        await self.catalogue.refresh()
        backend = await self._backend_or_none()
        info = backend.model_info if backend is not None else None
        entries = await asyncio.to_thread(self.catalogue.entries, info)
        resting = self.router.cooldowns.snapshot()
        for entry in entries:
            entry["cooldown"] = None
            if entry.get("available"):
                with contextlib.suppress(KyrosError):
                    deployment = self.catalogue.resolve(entry["name"]).deployment
                    entry["cooldown"] = resting.get(deployment)
        return entries

    async def model(self, name: str) -> dict[str, Any]:
        """One model (`kyros models show`): a catalogue entry, or any ``provider/model`` id,
        with its price and where the price comes from. ``NotFound`` for a name kyros could
        not call (a typo of an alias)."""
        await self.catalogue.refresh()
        backend = await self._backend_or_none()
        if not probe.known_name(self.catalogue, backend, name):
            raise NotFound(f"no model named {name!r} in the catalogue: see `kyros models list`")
        info = backend.model_info if backend is not None else None
        entry = await asyncio.to_thread(self.catalogue.entry, name, info)
        entry["cooldown"] = None
        if entry.get("available"):
            with contextlib.suppress(KyrosError):
                deployment = self.catalogue.resolve(name).deployment
                entry["cooldown"] = self.router.cooldowns.snapshot().get(deployment)
        return entry

    def model_roles(self) -> dict[str, list[str]]:
        """Per role, the names its calls try in order: its model, then its fallbacks."""
        table: dict[str, list[str]] = {}
        roles = self.settings.roles
        for role in ROLES:
            spec = roles.get(role)
            primary = self.catalogue.role_model(role)
            if primary is None:
                with contextlib.suppress(KyrosError):
                    primary = self.catalogue.resolve(None, role=role).name  # autodetected
            names = [primary, *(spec.fallbacks if spec else ())]
            table[role] = list(dict.fromkeys(n for n in names if n))
        return table

    async def test_model(self, name: str) -> dict[str, Any]:
        """One tiny call to ``name`` (`kyros models test`), written to the ledger."""
        self.live.check()
        await self.catalogue.refresh()
        backend = await asyncio.to_thread(self.backend)
        return await probe.test_model(self.catalogue, self.router, backend, self.store, name)

    async def job(self, job_id: int) -> dict[str, Any]:
        async with self.store.read() as conn:
            job = await jobs_repo.get(conn, job_id)
        if job is None:
            raise NotFound(f"no job with id {job_id}")
        return job
