"""The local daemon's life seen from a client: stop it, restart it, and tell whether it sees the
provider keys this shell exports (ADR 0017).

A daemon keeps the environment it was started with. A key exported in the user's shell later
never reaches it, and a key changed later leaves it with the old one. The daemon hands out a
keyed fingerprint of each key it holds (``GET /v1/daemon``); :func:`key_problems` compares them
with this process's keys without either side sending a key.
"""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kyros.credentials import PROVIDER_KEYS, key_fingerprint
from kyros.errors import KyrosError, UsageError
from kyros.settings import Loaded

if TYPE_CHECKING:
    from kyros.client.api import Client

#: How long `kyros daemon stop`/`restart` wait for running jobs by default.
STOP_TIMEOUT = 20.0
_PROVIDER_OF = {var: provider for provider, var in PROVIDER_KEYS.items()}


class StopTimeout(KyrosError):
    """The daemon did not stop in time (it still finishes its running jobs)."""

    code = "daemon_busy"
    exit_code = 1


def status_record(loaded: Loaded) -> dict[str, Any] | None:
    """What the running local daemon wrote about itself (pid, socket, start), or None."""
    try:
        return dict(json.loads(loaded.paths.status_file.read_text()))
    except (OSError, ValueError):
        return None


def alive(pid: int) -> bool:
    """True while ``pid`` runs; an exited child its parent has not reaped yet counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] != "Z"


def stop_local(loaded: Loaded, timeout: float = STOP_TIMEOUT) -> int | None:
    """Stop the local daemon (SIGTERM: running jobs finish or go back to the queue) and wait
    until it is gone. Returns its pid, or None when none was running. Raises
    :class:`StopTimeout` when it is still running after ``timeout`` seconds."""
    record = status_record(loaded)
    if not record:
        return None
    pid = int(record["pid"])
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        loaded.paths.status_file.unlink(missing_ok=True)  # a stale record
        return None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return pid
        time.sleep(0.05)
    raise StopTimeout(
        f"daemon pid {pid} did not stop within {timeout:.0f}s (it finishes its running jobs); "
        f"`kill -9 {pid}` forces it (its jobs are re-queued after their lease)"
    )


def restart_local(
    loaded: Loaded, daemon: str | None, token: str | None, timeout: float = STOP_TIMEOUT
) -> tuple[int | None, Client]:
    """Stop the local daemon, start a new one with this process's environment, and return the
    old pid and a client of the new daemon."""
    from kyros.client.discovery import connect, resolve_target

    target = resolve_target(loaded, daemon, token)
    if not target.local:
        raise UsageError(
            f"the daemon at {target.describe()} ({target.source}) is not this machine's local "
            "daemon: restart it where it runs"
        )
    old = stop_local(loaded, timeout)
    _, client = connect(loaded, daemon, token, autostart=True)
    return old, client


@dataclass(frozen=True)
class KeyProblem:
    """A provider key of this shell the daemon lacks (``missing``) or holds another of."""

    env_var: str
    missing: bool
    #: Where the daemon's other key comes from (``environment`` or ``stored key``).
    daemon_source: str | None = None

    @property
    def provider(self) -> str:
        return _PROVIDER_OF.get(self.env_var) or self.env_var.removesuffix("_API_KEY").lower()


def key_problems(view: dict[str, Any], shell_keys: dict[str, str]) -> list[KeyProblem]:
    """This shell's provider keys (``{ENV_VAR: key}``) that the daemon described by ``view``
    (``GET /v1/daemon``) does not hold, or holds another value of."""
    salt = str(view["key_salt"])
    held = {k["env_var"]: k for k in view.get("keys", [])}
    problems = []
    for var, key in sorted(shell_keys.items()):
        seen = held.get(var)
        if seen is None:
            problems.append(KeyProblem(var, missing=True))
        elif seen["fingerprint"] != key_fingerprint(key, salt):
            problems.append(KeyProblem(var, missing=False, daemon_source=seen["source"]))
    return problems


def started_words(view: dict[str, Any]) -> str:
    """``pid 4242, started 09:15`` (local time; with the date when not today)."""
    started = view.get("started_at")
    when = ""
    if isinstance(started, str):
        try:
            moment = datetime.fromisoformat(started).astimezone()
        except ValueError:
            moment = None
        if moment is not None:
            today = datetime.now().astimezone().date()
            when = moment.strftime("%H:%M" if moment.date() == today else "%Y-%m-%d %H:%M")
    return f"pid {view.get('pid')}" + (f", started {when}" if when else "")


def problem_words(view: dict[str, Any], problem: KeyProblem) -> str:
    """One problem as the user reads it, with the commands that fix it."""
    who = f"the daemon ({started_words(view)})"
    if problem.missing:
        return (
            f"{who} does not see {problem.env_var}: `kyros daemon restart`, "
            f"or `kyros auth set-key {problem.provider}`"
        )
    fix = "`kyros daemon restart`"
    if problem.daemon_source == "stored key":
        fix += f", or `kyros auth set-key {problem.provider}`"
    return f"{who} uses another {problem.env_var} ({problem.daemon_source}) than this shell: {fix}"
