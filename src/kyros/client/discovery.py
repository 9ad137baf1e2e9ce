"""Finding the daemon (``--daemon`` > ``KYROS_DAEMON`` > config > local socket) and starting a
local one in the background when none answers, as tmux and docker do."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from kyros import tokens
from kyros.errors import DaemonUnreachable, UsageError
from kyros.redaction import redact_shapes
from kyros.settings import Loaded

if TYPE_CHECKING:
    from kyros.client.api import Client

READY_TIMEOUT = 30.0
#: After the daemon we started exits, how long another one may take to answer.
EXITED_GRACE = 3.0


@dataclass(frozen=True)
class DaemonTarget:
    """Where a daemon listens. ``local`` targets may be started on demand."""

    base_url: str
    uds: str | None = None
    local: bool = False
    token: str | None = field(default=None, repr=False)
    source: str = "default"

    def describe(self) -> str:
        return f"unix://{self.uds}" if self.uds else self.base_url


def resolve_target(
    loaded: Loaded, daemon: str | None = None, token: str | None = None
) -> DaemonTarget:
    """Apply the discovery order; the token comes from ``--token`` > ``KYROS_TOKEN`` > stored
    credentials."""
    url, source = daemon, "--daemon"
    if not url:
        url = loaded.daemon
        source = loaded.source_of("daemon")
    token = token or loaded.token or tokens.read_local_token(loaded.paths)
    if not url:
        return DaemonTarget(
            base_url="http://kyros", uds=str(loaded.paths.socket), local=True, source="local socket"
        )
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  # parsed on access: "http://h:x" and "http://[::1" fail here
    except ValueError:
        parts = urlsplit("")  # not understood: reported below
    if parts.scheme == "unix":
        path = parts.path or parts.netloc
        default = Path(path) == loaded.paths.socket
        return DaemonTarget(base_url="http://kyros", uds=path, local=default, source=source)
    if parts.scheme in ("http", "https") and parts.netloc:
        return DaemonTarget(base_url=f"{parts.scheme}://{parts.netloc}", token=token, source=source)
    raise UsageError(
        f"daemon address {redact_shapes(url)!r} ({source}) is not understood: use "
        "unix:///path/kyros.sock or http(s)://HOST:PORT",
        code="bad_daemon_address",
        hint="kyros --daemon http://127.0.0.1:8765 daemon status",
    )


def spawn_local(loaded: Loaded) -> subprocess.Popen[bytes]:
    """Start `kyros daemon serve` detached from this terminal, logging to the state dir."""
    log_file = loaded.paths.log_file
    log_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with log_file.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "kyros", "daemon", "serve", "--autostarted"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            cwd="/",
            env=os.environ.copy(),
        )


def _log_tail(path: Path, lines: int = 12) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


def connect(
    loaded: Loaded,
    daemon: str | None = None,
    token: str | None = None,
    *,
    autostart: bool = True,
    timeout: float = 30.0,
) -> tuple[DaemonTarget, Client]:
    """Resolve the target and return a ready :class:`~kyros.client.api.Client` for it."""
    from kyros.client.api import Client

    target = resolve_target(loaded, daemon, token)
    client = Client(target, timeout=timeout)
    try:
        client.health()
        return target, client
    except DaemonUnreachable:
        if not (target.local and autostart):
            raise
    proc = spawn_local(loaded)
    deadline = time.monotonic() + READY_TIMEOUT
    exited_at: float | None = None
    last = "no answer yet"
    while time.monotonic() < deadline:
        if exited_at is None and proc.poll() is not None:
            # Another client may have started a daemon at the same moment: the instance lock
            # lets one win and the other exits. Give the winner a moment to answer.
            exited_at = time.monotonic()
        if exited_at is not None and time.monotonic() - exited_at > EXITED_GRACE:
            tail = _log_tail(loaded.paths.log_file)
            raise DaemonUnreachable(
                f"the kyros daemon failed to start (exit {proc.returncode}); its log "
                f"({loaded.paths.log_file}) ends with:\n{tail}"
            )
        try:
            ready = client.ready()
            if ready.get("ready"):
                return target, client
            last = "; ".join(
                f"{name}: {check['detail']}"
                for name, check in ready.get("checks", {}).items()
                if not check.get("ok")
            )
        except DaemonUnreachable as exc:
            last = exc.message
        except Exception as exc:  # a 503 while starting
            last = str(exc)
        time.sleep(0.05)
    raise DaemonUnreachable(
        f"started a local daemon but it was not ready within {READY_TIMEOUT:.0f}s ({last}); "
        f"see {loaded.paths.log_file}"
    )
