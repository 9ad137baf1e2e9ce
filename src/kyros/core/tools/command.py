"""The shell tool: one command in the workspace, bounded in time, output and environment.

The command runs under ``bash -c`` in a new session (so its process group is its own and a
timeout can end every process it started), with stdin from ``/dev/null`` and stdout and stderr
merged. Its environment is built from an allow-list: provider keys, kyros tokens and the like in
the daemon's environment never reach it (RELIABILITY.md S11). Output is read continuously and
only its head and tail are kept, so a command printing 100 MB neither blocks on a full pipe nor
fills memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass

from kyros.core.tools.files import ToolError
from kyros.core.tools.pathpolicy import PathPolicy
from kyros.core.tools.sanitize import clean_text

__all__ = ["ENV_ALLOWED", "CommandResult", "build_env", "run_command"]

#: The only variables a command inherits. Everything else (``*_API_KEY``, ``KYROS_*`` tokens,
#: cloud credentials, ``SSH_AUTH_SOCK``, ``LD_PRELOAD``) is dropped by not being listed.
ENV_ALLOWED = (
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TERM",
    "TMPDIR",
    "TZ",
    "USER",
    "SHELL",
)
#: Default cap on kept output: 64 KiB is ~16k tokens, a lot of context for one command.
MAX_OUTPUT = 64 * 1024
#: Between SIGTERM and SIGKILL when a command is ended: time to flush and remove temp files.
KILL_GRACE_S = 2.0
#: After the shell exits, how long its output pipe may stay open (held by a process that left
#: its process group) before reading stops.
DRAIN_S = 1.0
_CHUNK = 64 * 1024
_SHELLS = ("/bin/bash", "/bin/sh")


@dataclass(frozen=True)
class CommandResult:
    """How a command ended. ``exit_code`` is ``None`` when it was killed for its timeout and
    negative (``-signal``) when a signal ended it otherwise."""

    exit_code: int | None
    output: str
    timed_out: bool
    truncated_bytes: int
    duration: float
    timeout: float = 0.0

    def for_model(self) -> str:
        """The result as the model reads it: a status line, then the output."""
        if self.timed_out:
            status = f"timed out after {self.timeout:g} s; the command and its children were killed"
        elif self.exit_code is not None and self.exit_code < 0:
            status = f"killed by signal {-self.exit_code}"
        else:
            status = f"exit code {self.exit_code}"
        return f"{status}\n{self.output}" if self.output else f"{status}\n(no output)"


def build_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a command: the allow-listed variables of ours, then ``extra``."""
    env = {k: os.environ[k] for k in ENV_ALLOWED if k in os.environ}
    for key, value in (extra or {}).items():
        if not key or "=" in key or "\0" in key or "\0" in value:
            raise ToolError(f"invalid environment variable {key!r}")
        env[key] = value
    return env


class Capped:
    """Keeps the first ``head`` and last ``tail`` bytes of a stream and counts the rest."""

    def __init__(self, limit: int) -> None:
        self.head_limit = limit // 2
        self.tail_limit = limit - self.head_limit
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def feed(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self.head_limit - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        if chunk and self.tail_limit > 0:
            self.tail += chunk[-self.tail_limit :]
            if len(self.tail) > self.tail_limit:
                del self.tail[: len(self.tail) - self.tail_limit]

    @property
    def omitted(self) -> int:
        return self.total - len(self.head) - len(self.tail)

    def text(self) -> str:
        if self.omitted <= 0:
            return clean_text(bytes(self.head + self.tail))
        return (
            clean_text(bytes(self.head))
            + f"\n[… {self.omitted} bytes omitted …]\n"
            + clean_text(bytes(self.tail))
        )


def _signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to process group ``pgid``; ``False`` when no process is left in it."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # the group id was reused by someone else's processes: not ours to end
    return True


async def _end_group(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM the command's process group, then SIGKILL what is left after a grace period.

    The group id stays the shell's pid while any member lives, even after the shell exited,
    and the kernel does not hand out a pid still in use as a group id, so a live group is never
    confused with a stranger's.
    """
    if not _signal_group(proc.pid, signal.SIGTERM):
        return
    deadline = time.monotonic() + KILL_GRACE_S
    while time.monotonic() < deadline:
        if not _group_alive(proc.pid):
            return
        await asyncio.sleep(0.02)
    _signal_group(proc.pid, signal.SIGKILL)


def _group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` still runs. Zombies do not count: killed orphans
    are reparented to PID 1, which in a container may never reap them, and waiting for them
    would cost the whole grace period."""
    if not _signal_group(pgid, 0):
        return False
    try:
        pids = [name for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return True  # no /proc: the signal answer is all there is
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        # After the command name: state, ppid, pgrp (proc(5)).
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            return True
    return False


async def _exited(proc: asyncio.subprocess.Process, deadline: float) -> bool:
    """Wait until the shell itself has exited, or ``deadline`` (monotonic) passes.

    ``Process.wait()`` would also wait for the output pipe to close, which a background
    process started by the command may hold open for as long as it runs.
    """
    delay = 0.005
    while proc.returncode is None:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        await asyncio.sleep(min(delay, left))
        delay = min(delay * 2, 0.1)
    return True


async def run_command(
    policy: PathPolicy,
    command: str,
    *,
    cwd: str = ".",
    timeout: float = 60.0,
    max_output: int = MAX_OUTPUT,
    env: Mapping[str, str] | None = None,
) -> CommandResult:
    """Run ``command`` with the shell in directory ``cwd`` of the workspace.

    Processes it leaves in the background are ended when the shell exits. Raises
    :class:`PathDenied` for a ``cwd`` the policy refuses and :class:`ToolError` for a command
    that cannot be started.
    """
    if "\0" in command:
        raise ToolError("the command contains a NUL byte")
    try:
        command.encode("utf-8")
    except UnicodeEncodeError:
        raise ToolError("the command is not valid Unicode (it holds a lone surrogate)") from None
    workdir = policy.cwd(cwd)
    shell = next((s for s in _SHELLS if os.access(s, os.X_OK)), None)
    if shell is None:
        raise ToolError("no shell found (/bin/bash or /bin/sh)")
    started = time.monotonic()
    try:
        proc = await asyncio.create_subprocess_exec(
            shell,
            "-c",
            command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=str(workdir),
            env=build_env(env),
            start_new_session=True,
        )
    except OSError as exc:
        raise ToolError(f"could not start the command: {exc.strerror or exc}") from None
    assert proc.stdout is not None
    stdout = proc.stdout
    out = Capped(max_output)

    async def read_all() -> None:
        while chunk := await stdout.read(_CHUNK):
            out.feed(chunk)

    reader = asyncio.create_task(read_all())
    ended = False
    try:
        timed_out = not await _exited(proc, started + timeout)
        # Whether it timed out or exited, nothing of its process group may outlive the call.
        await _end_group(proc)
        ended = True
        await _exited(proc, time.monotonic() + KILL_GRACE_S)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(reader), DRAIN_S)
    finally:
        if not ended:  # cancelled: end it at once, without the grace period
            _signal_group(proc.pid, signal.SIGKILL)
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
    return CommandResult(
        exit_code=None if timed_out else proc.returncode,
        output=out.text(),
        timed_out=timed_out,
        truncated_bytes=max(out.omitted, 0),
        duration=time.monotonic() - started,
        timeout=timeout,
    )
