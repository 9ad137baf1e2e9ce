"""The console's one link to a daemon: blocking :mod:`kyros.client` calls, made from worker
threads only, and the link's state (connected, reconnecting, failing) as they reveal it.

Nothing here imports textual: the screens start the workers and turn results into Messages.

Why a run's events are read in short polls (``follow=false`` from the last sequence number)
rather than one long ``follow`` stream: a thread worker cannot be interrupted inside a blocking
read, and asyncio joins the default executor's threads when the app exits. A follow stream
parked on a quiet run (one waiting for approval sends a keep-alive every few seconds, no event)
would hold ``ctrl+q`` and every switch of the selected run for that long. A poll every 0.25 s
costs the daemon two indexed reads and shows tokens within a quarter second; resuming after a
daemon restart is the same call with the same ``after``: no gap, no duplicate.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from kyros.errors import AuthError, DaemonUnreachable, KyrosError, VersionSkew
from kyros.settings import Loaded

if TYPE_CHECKING:
    from kyros.client.discovery import DaemonTarget

T = TypeVar("T")

#: The newest runs a full poll reads (the daemon's cap); older rows stay as last seen.
RUNS_WINDOW = 1000
#: The newest runs every other poll reads. A run's JSON carries its output (plans, diffs):
#: reading 1,000 of them every second would move megabytes to show a few changes. Runs that
#: move are running or waiting, and those are read on every poll whatever their age.
RECENT_WINDOW = 100


class DaemonApi(Protocol):
    """What the console calls on :class:`kyros.client.Client` (a fake one serves snapshots)."""

    def runs(self, **params: Any) -> list[dict[str, Any]]: ...
    def run(self, run_id: str) -> dict[str, Any]: ...
    def review(self, run_id: str) -> dict[str, Any]: ...
    def create_run(self, kind: str, body: dict[str, Any]) -> dict[str, Any]: ...
    def approve(
        self, run_id: str, *, approve: bool, always: bool = False, reason: str | None = None
    ) -> dict[str, Any]: ...
    def cancel(self, run_id: str) -> dict[str, Any]: ...
    def apply(self, run_id: str) -> dict[str, Any]: ...
    def agents_status(self) -> list[dict[str, Any]]: ...
    def terminals(self) -> list[dict[str, Any]]: ...
    def create_terminal(self, body: dict[str, Any]) -> dict[str, Any]: ...
    def kill_terminal(self, ref: str) -> dict[str, Any]: ...
    def usage(
        self,
        by: str = "model",
        since: str | None = None,
        until: str | None = None,
        run: str | None = None,
    ) -> dict[str, Any]: ...
    def usage_calls(
        self,
        since: str | None = None,
        until: str | None = None,
        run: str | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]: ...
    def events(
        self,
        run_id: str,
        *,
        after: int = 0,
        follow: bool = True,
        reconnect_for: float = 30.0,
        stop_on: frozenset[str] = frozenset(),
    ) -> Iterator[dict[str, Any]]: ...
    def close(self) -> None: ...


class LinkState(StrEnum):
    CONNECTED = "connected"
    #: The daemon does not answer (stopped, restarting): calls are retried until it does.
    RECONNECTING = "reconnecting"
    #: The daemon answers but refuses us (another API version, a bad token).
    FAILING = "failing"


@dataclass(frozen=True)
class Snapshot:
    """What one poll saw: the newest runs, every run waiting for a human, the agents."""

    runs: list[dict[str, Any]]
    approvals: list[dict[str, Any]]
    agents: list[dict[str, Any]] = field(default_factory=list)
    #: The daemon it was read from (a poll in flight during a switch is dropped).
    source: str = ""


#: Called (from any thread) when the link's state changes: ``(state, detail)``.
Listener = Callable[[LinkState, str | None], None]
#: Opens a link to another daemon address: ``(label, client)``; raises a KyrosError.
Switcher = Callable[[str], tuple[str, DaemonApi]]


class Connection:
    """A daemon client shared by the console's worker threads (httpx's client is thread-safe),
    with the link state every call updates and a stop signal every loop honours."""

    def __init__(self, client: DaemonApi, label: str, *, switcher: Switcher | None = None) -> None:
        self._client = client
        self.label = label
        self._switcher = switcher
        self._lock = threading.Lock()
        self._state = LinkState.CONNECTED
        self._detail: str | None = None
        self._stopping = threading.Event()
        self._poke = threading.Event()
        self.listener: Listener | None = None
        #: The first full snapshot, being read ahead of the screen (see :meth:`prefetch`).
        self._first: Future[Snapshot] | None = None

    # --- state ----------------------------------------------------------------------------

    @property
    def state(self) -> LinkState:
        return self._state

    @property
    def detail(self) -> str | None:
        return self._detail

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    @property
    def can_switch(self) -> bool:
        return self._switcher is not None

    def _set(self, state: LinkState, detail: str | None) -> None:
        with self._lock:
            if (state, detail) == (self._state, self._detail):
                return
            self._state, self._detail = state, detail
            listener = self.listener
        if listener is not None:
            listener(state, detail)

    def _call(self, fn: Callable[[DaemonApi], T]) -> T:
        try:
            result = fn(self._client)
        except DaemonUnreachable as exc:
            self._set(LinkState.RECONNECTING, exc.message)
            raise
        except (VersionSkew, AuthError) as exc:
            self._set(LinkState.FAILING, exc.message)
            raise
        except KyrosError:
            self._set(LinkState.CONNECTED, None)  # an answer, if a refusal: the link works
            raise
        self._set(LinkState.CONNECTED, None)
        return result

    # --- pacing ---------------------------------------------------------------------------

    def nap(self, seconds: float) -> bool:
        """Sleep up to ``seconds`` (less when poked or stopping); True when stopping."""
        if self._poke.wait(seconds):
            self._poke.clear()
        return self._stopping.is_set()

    def pause(self, seconds: float) -> bool:
        """Sleep up to ``seconds`` (less when stopping); True when stopping."""
        return self._stopping.wait(seconds)

    def poke(self) -> None:
        """Wake the poll now (after an action changed something)."""
        self._poke.set()

    def close(self) -> None:
        """Ask every loop to stop (the app is closing); :meth:`dispose` once they have."""
        self._stopping.set()
        self._poke.set()

    def dispose(self) -> None:
        """Stop every loop and close the client (after the workers' threads are joined)."""
        self.close()
        self._client.close()

    # --- calls (blocking: worker threads only) --------------------------------------------

    def prefetch(self) -> None:
        """Start reading the first full snapshot now, in a thread of its own: the screen is
        built meanwhile (~150 ms on a 2-core machine), and the first poll finds the runs read
        instead of starting four requests once it is up. Its failures are not the link's:
        the poll reads again, and tells the link's state as always."""
        future: Future[Snapshot] = Future()

        def read() -> None:
            try:
                future.set_result(self._snapshot(lambda fn: fn(self._client), full=True))
            except BaseException as exc:  # the poll reads again
                future.set_exception(exc)

        with self._lock:
            self._first = future
        threading.Thread(target=read, name="first snapshot", daemon=True).start()

    def first_snapshot(self) -> Snapshot | None:
        """The read-ahead snapshot (:meth:`prefetch`), taken, if it has arrived whole; else
        None (the first poll waits for it or reads again)."""
        with self._lock:
            first = self._first
            if first is None or not first.done() or first.exception() is not None:
                return None
            self._first = None
        return first.result()

    def snapshot(self, *, full: bool = True) -> Snapshot:
        """The newest runs (:data:`RUNS_WINDOW` when ``full``, else :data:`RECENT_WINDOW`),
        every running and waiting run, and the agents."""
        with self._lock:
            first, self._first = self._first, None
        if first is not None and full and first.exception() is None:  # waits for it
            return first.result()
        return self._snapshot(self._call, full=full)  # a failed read-ahead: through the link

    def _snapshot(
        self, call: Callable[[Callable[[DaemonApi], Any]], Any], *, full: bool
    ) -> Snapshot:
        limit = RUNS_WINDOW if full else RECENT_WINDOW
        source = self.label
        runs = call(lambda c: c.runs(limit=limit))
        running = call(lambda c: c.runs(status="running", limit=RUNS_WINDOW))
        waiting = call(lambda c: c.runs(status="needs_approval", limit=RUNS_WINDOW))
        agents = call(lambda c: c.agents_status())
        return Snapshot([*runs, *running], waiting, agents, source=source)

    def run(self, run_id: str) -> dict[str, Any]:
        return self._call(lambda c: c.run(run_id))

    def review(self, run_id: str) -> dict[str, Any]:
        return self._call(lambda c: c.review(run_id))

    def events_after(self, run_id: str, after: int) -> list[dict[str, Any]]:
        """The run's stored events with ``seq > after``. Events read before a dropped
        connection are returned (the next call resumes after them); with none, it raises."""
        got: list[dict[str, Any]] = []

        def read(c: DaemonApi) -> list[dict[str, Any]]:
            for event in c.events(run_id, after=after, follow=False, reconnect_for=0):
                got.append(event)
            return got

        try:
            return self._call(read)
        except DaemonUnreachable:
            if got:
                return got
            raise

    def create_run(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._call(lambda c: c.create_run(kind, body))

    def answer(self, run_id: str, *, approve: bool, reason: str | None = None) -> dict[str, Any]:
        return self._call(lambda c: c.approve(run_id, approve=approve, reason=reason))

    def cancel(self, run_id: str) -> dict[str, Any]:
        return self._call(lambda c: c.cancel(run_id))

    def apply(self, run_id: str) -> dict[str, Any]:
        return self._call(lambda c: c.apply(run_id))

    def terminals(self) -> list[dict[str, Any]]:
        """The daemon's terminals, running and recently exited, oldest first."""
        return self._call(lambda c: c.terminals())

    def create_terminal(self, body: dict[str, Any]) -> dict[str, Any]:
        """Start a terminal (``POST /v1/terminals``): the user's shell unless ``command``."""
        return self._call(lambda c: c.create_terminal(body))

    def kill_terminal(self, ref: str) -> dict[str, Any]:
        return self._call(lambda c: c.kill_terminal(ref))

    def usage(self, by: str, *, calls: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The cost ledger grouped ``by`` (``GET /v1/usage``) and its newest ``calls`` model
        calls (``GET /v1/usage/calls``), as `kyros usage` reads them."""
        report = self._call(lambda c: c.usage(by))
        return report, self._call(lambda c: c.usage_calls(limit=calls))

    @property
    def local(self) -> bool:
        """The daemon listens on a Unix socket here: it sees this machine's directories."""
        return self.label.startswith("unix://")

    def attach_target(self) -> DaemonTarget:
        """Where a terminal's attach WebSocket connects (the current daemon's address and
        credentials). Raises :class:`~kyros.errors.KyrosError` for a client without one."""
        target = getattr(self._client, "target", None)
        if target is None:
            raise KyrosError("this console cannot attach to terminals")
        return target  # type: ignore[no-any-return]

    def switch(self, address: str) -> str:
        """Point the console at another daemon; returns its label. The old link stays on
        failure."""
        if self._switcher is None:
            raise KyrosError("this console cannot switch daemons")
        label, client = self._switcher(address)
        with self._lock:
            old, self._client, self.label = self._client, client, label
        old.close()
        self._set(LinkState.CONNECTED, None)
        return label


def open_connection(loaded: Loaded, daemon: str | None, token: str | None) -> Connection:
    """Connect to the daemon the user chose, starting a local one if none answers (as every
    CLI command does). Raises :class:`~kyros.errors.KyrosError` before any UI exists."""
    from kyros.client import connect

    target, client = connect(loaded, daemon, token, autostart=True)

    def switcher(address: str) -> tuple[str, DaemonApi]:
        other, c = connect(loaded, address, token, autostart=False, timeout=30.0)
        return other.describe(), c

    connection = Connection(client, target.describe(), switcher=switcher)
    connection.prefetch()
    return connection
