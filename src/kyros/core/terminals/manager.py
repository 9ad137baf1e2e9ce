"""The daemon's terminals: creating them from checked input, finding them, ending them.

A terminal's environment is built from an allow-list (the one the shell tool uses, plus the
``LC_*`` locale variables) and ``TERM=xterm-256color``: provider keys, ``KYROS_*`` tokens and
everything else in the daemon's environment stay out of it (RELIABILITY.md S11), and so does
any picked variable whose value looks like a key. Sessions that
ended stay listed, with their exit status and scrollback, until removed or until more than
``keep_exited`` of them have ended after them.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import re
import shutil
import signal
from collections.abc import Mapping, Sequence

from kyros.core.terminals.ring import DEFAULT_SCROLLBACK
from kyros.core.terminals.session import KILL_GRACE_S, TerminalSession, check_size
from kyros.core.tools.command import ENV_ALLOWED
from kyros.errors import Conflict, InvalidInput, NotFound
from kyros.redaction import looks_like_secret

log = logging.getLogger("kyros.terminals")

__all__ = ["KEEP_EXITED", "MAX_LIVE", "TerminalManager", "default_shell", "terminal_env"]

#: Ended sessions kept for their status and scrollback: up to 50 x 2 MiB of memory.
KEEP_EXITED = 50
#: Live sessions at once: each holds a pty, two descriptors and a process tree.
MAX_LIVE = 64
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
_ID = re.compile(r"t_[0-9a-z]{16}\Z")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_SHELLS = ("/bin/bash", "/bin/sh")


def terminal_env(
    base: Mapping[str, str],
    extra: Mapping[str, str] | None = None,
    *,
    inherit: Sequence[str] = (),
) -> dict[str, str]:
    """The environment of a terminal: the allow-listed variables of ``base`` and those named in
    ``inherit`` (the ``terminal_env`` setting, checked when loaded), then ``extra``."""
    picked = {key: base[key] for key in (*ENV_ALLOWED, *inherit) if key in base}
    picked.update((key, value) for key, value in base.items() if key.startswith("LC_"))
    env = {}
    for key, value in picked.items():
        if looks_like_secret(value):
            # The name passed the setting's check, the value did not (a key in JAVA_OPTS).
            log.warning("a terminal does not inherit %s: its value looks like a key", key)
            continue
        env[key] = value
    env["TERM"] = "xterm-256color"
    for key, value in (extra or {}).items():
        if not (isinstance(key, str) and _ENV_NAME.match(key)):
            raise InvalidInput(f"invalid environment variable name {key!r}")
        if not isinstance(value, str) or "\0" in value:
            raise InvalidInput(f"invalid value for environment variable {key}")
        env[key] = value
    return env


def default_shell(env: Mapping[str, str]) -> str:
    """``$SHELL`` when it is an executable absolute path, else bash, else sh."""
    shell = env.get("SHELL", "")
    candidates = ((shell,) if os.path.isabs(shell) else ()) + _SHELLS
    for path in candidates:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    raise InvalidInput("no shell found: $SHELL, /bin/bash and /bin/sh are all missing")


class TerminalManager:
    """Every terminal of the daemon, by id and by name.

    ``environ`` is the environment the allow-list picks from (the daemon's own by default,
    read at each :meth:`create`); ``inherit_env`` names variables added to the allow-list.
    """

    def __init__(
        self,
        *,
        environ: Mapping[str, str] | None = None,
        keep_exited: int = KEEP_EXITED,
        max_live: int = MAX_LIVE,
        kill_grace: float = KILL_GRACE_S,
        scrollback: int = DEFAULT_SCROLLBACK,
        inherit_env: Sequence[str] = (),
    ) -> None:
        self.keep_exited = keep_exited
        self.max_live = max_live
        self.kill_grace = kill_grace
        self.scrollback = scrollback
        self._environ = environ
        self._inherit_env = tuple(inherit_env)
        self._sessions: dict[str, TerminalSession] = {}  # in creation order
        self._exited: dict[str, None] = {}  # ids of ended sessions, in the order they ended

    def create(
        self,
        command: Sequence[str] | None = None,
        *,
        cwd: str | os.PathLike[str],
        name: str | None = None,
        env_extra: Mapping[str, str] | None = None,
        rows: int = 24,
        cols: int = 80,
        run_id: str | None = None,
        idle_seconds: float | None = None,
        total_seconds: float | None = None,
    ) -> TerminalSession:
        """Start ``command`` (the user's shell when ``None``) on a new pty in ``cwd``.

        Must be called inside the running event loop. Raises :class:`InvalidInput` for a bad
        argument or a command that cannot be started and :class:`Conflict` for a name a live
        session holds or when ``max_live`` sessions are running.
        """
        env = terminal_env(
            os.environ if self._environ is None else self._environ,
            env_extra,
            inherit=self._inherit_env,
        )
        workdir = _check_cwd(cwd)
        argv = _resolve(command, env, workdir)
        check_size(rows, cols)
        for limit, seconds in (("idle_seconds", idle_seconds), ("total_seconds", total_seconds)):
            if seconds is not None and not _positive(seconds):
                raise InvalidInput(f"{limit} must be a positive number of seconds, not {seconds!r}")
        live = [s for s in self._sessions.values() if s.running]
        if name is not None:
            if not isinstance(name, str) or not _NAME.match(name) or _ID.match(name):
                raise InvalidInput(
                    f"invalid terminal name {name!r}: use up to 64 letters, digits, '.', '_' "
                    "or '-', starting with a letter or digit"
                )
            if any(s.name == name for s in live):
                raise Conflict(f"a running terminal is already named {name!r}")
        if len(live) >= self.max_live:
            raise Conflict(
                f"{len(live)} terminals are running, the most allowed; end one first",
                code="too_many_terminals",
            )
        try:
            session = TerminalSession(
                argv,
                cwd=workdir,
                env=env,
                name=name,
                rows=rows,
                cols=cols,
                run_id=run_id,
                idle_seconds=idle_seconds,
                total_seconds=total_seconds,
                scrollback=self.scrollback,
                on_exit=self._on_exit,
            )
        except OSError as exc:
            raise InvalidInput(f"could not start {argv[0]!r}: {exc.strerror or exc}") from None
        self._sessions[session.id] = session
        return session

    def get(self, id_or_name: str) -> TerminalSession:
        """The session with this id, else the running one with this name, else the one with
        this name that ended last. Raises :class:`NotFound`."""
        session = self._sessions.get(id_or_name)
        if session is not None:
            return session
        named = [s for s in self._sessions.values() if s.name == id_or_name]
        if not named:
            raise NotFound(
                f"no terminal with id or name {id_or_name!r}; `kyros term ls` shows them",
                detail={"terminal": id_or_name},
            )
        live = [s for s in named if s.running]
        if live:
            return live[0]
        return max(named, key=lambda s: s.exited_at or s.created_at)

    def list(self) -> list[TerminalSession]:
        """Every session kept, running or ended, oldest first."""
        return list(self._sessions.values())

    async def kill(
        self, id_or_name: str, sig: int = signal.SIGTERM, *, grace: float | None = None
    ) -> TerminalSession:
        """End a session (see :meth:`TerminalSession.kill`) and return it once it ended."""
        session = self.get(id_or_name)
        await session.kill(sig, grace=self.kill_grace if grace is None else grace)
        return session

    def remove(self, id_or_name: str) -> None:
        """Forget an ended session. Raises :class:`Conflict` while it runs."""
        session = self.get(id_or_name)
        if session.running:
            raise Conflict(f"terminal {session.id} is still running; kill it first")
        self._sessions.pop(session.id, None)
        self._exited.pop(session.id, None)

    async def close_all(self, *, grace: float | None = None) -> None:
        """Daemon shutdown: SIGTERM every running session, SIGKILL what is left after
        ``grace`` seconds, and return once all of them ended."""
        wait = self.kill_grace if grace is None else grace
        live = [s for s in self._sessions.values() if s.running]
        await asyncio.gather(*(s.kill(signal.SIGTERM, grace=wait) for s in live))

    def _on_exit(self, session: TerminalSession) -> None:
        if session.id not in self._sessions:  # failed while starting: never listed
            return
        self._exited[session.id] = None
        while len(self._exited) > self.keep_exited:
            oldest = next(iter(self._exited))
            del self._exited[oldest]
            self._sessions.pop(oldest, None)


def _positive(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


def _check_cwd(cwd: str | os.PathLike[str]) -> str:
    path = os.fspath(cwd)
    if not isinstance(path, str) or "\0" in path or not os.path.isabs(path):
        raise InvalidInput(f"the terminal directory must be an absolute path, not {path!r}")
    if not os.path.isdir(path):
        raise InvalidInput(f"the terminal directory {path} does not exist or is not a directory")
    if not os.access(path, os.X_OK):
        raise InvalidInput(f"the terminal directory {path} cannot be entered")
    return path


def _resolve(command: Sequence[str] | None, env: Mapping[str, str], cwd: str) -> list[str]:
    """The argv to execute, its program an absolute path (looked up in the terminal's PATH;
    a relative path with a slash is taken from ``cwd``, as the child would)."""
    if command is None:
        return [default_shell(env)]
    if isinstance(command, str | bytes) or not command:
        raise InvalidInput("the command must be a non-empty list of arguments")
    argv = list(command)
    if not all(isinstance(arg, str) and "\0" not in arg for arg in argv):
        raise InvalidInput("every argument of the command must be a string without NUL bytes")
    program = argv[0]
    if "/" in program:
        path = os.path.join(cwd, program)
        found = path if os.path.isfile(path) and os.access(path, os.X_OK) else None
    else:
        found = shutil.which(program, path=env.get("PATH", os.defpath))
    if found is None:
        raise InvalidInput(f"command not found: {program!r}", detail={"command": argv})
    argv[0] = os.path.abspath(found)
    return argv
