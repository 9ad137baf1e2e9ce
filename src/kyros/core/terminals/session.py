"""One pty session owned by the daemon, run without ever blocking the event loop.

The non-blocking pty master is read by a ``loop.add_reader`` callback reading at most 64 KiB
(a flood of output costs the loop short callbacks, never a long stretch); input is queued
and written by a ``loop.add_writer`` callback (a large paste into a program that is not reading
waits in our queue, not in ``write(2)``). The child's exit is watched through a pidfd, else by
polling ``waitpid(WNOHANG)``; ptyprocess's ``terminate()``, ``close()`` and ``wait()`` sleep or
block, so none is called. Output goes to the scrollback and every :class:`Viewer` (see ``ring``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from ptyprocess import PtyProcess

from kyros.core.ids import new_id
from kyros.core.terminals.ring import DEFAULT_SCROLLBACK, VIEWER_MAX_PENDING, ScrollbackRing, Viewer
from kyros.errors import Conflict, InvalidInput, PayloadTooLarge

__all__ = ["KILL_GRACE_S", "MAX_SIDE", "TerminalSession", "check_size"]

#: Read per reader callback, at most this much: bounded work per loop iteration.
READ_CHUNK = 64 * 1024
#: Input queued for a child that is not reading; past it, :meth:`TerminalSession.write` refuses.
MAX_PENDING_INPUT = 8 * 1024 * 1024
#: Largest window side: beyond any real screen, small enough for an emulator's grid.
MAX_SIDE = 1000
#: Between the signal of :meth:`TerminalSession.kill` and SIGKILL.
KILL_GRACE_S = 2.0
#: After the child exited, how long output is still read while a process it left in the
#: background holds the pty open; then the master is closed, which hangs those processes up.
DRAIN_S = 1.0
_POLL_S = 0.1  # waitpid polling period where pidfds are missing
# Reset in the child: Python ignores SIGPIPE and SIGXFSZ, ignored signals survive exec.
_RESET_SIGNALS = ("SIGPIPE", "SIGXFSZ", "SIGHUP", "SIGINT", "SIGQUIT", "SIGTERM", "SIGCHLD")


class TerminalSession:
    """A command running on a pty, with its scrollback, viewers and exit status.

    Create it inside the running event loop (normally through ``TerminalManager.create``). The
    environment is used as given: the caller builds it from an allow-list. ``exited`` is set once
    the child has ended and its last output was read; then ``exit_code`` (a normal exit) or
    ``signal`` (killed by a signal) is set, and ``ended_by`` says whether kyros ended it
    (``"killed"``, ``"idle"``, ``"total_time"``) or it ended on its own (``None``).
    """

    def __init__(
        self,
        command: Sequence[str],
        *,
        cwd: str,
        env: Mapping[str, str],
        name: str | None = None,
        rows: int = 24,
        cols: int = 80,
        run_id: str | None = None,
        idle_seconds: float | None = None,
        total_seconds: float | None = None,
        scrollback: int = DEFAULT_SCROLLBACK,
        on_exit: Callable[[TerminalSession], None] | None = None,
    ) -> None:
        check_size(rows, cols)
        self._loop = asyncio.get_running_loop()
        self.id = new_id("t")
        self.name = name
        self.command = list(command)
        self.cwd = cwd
        self.run_id = run_id
        self.rows, self.cols = rows, cols
        self.idle_seconds = idle_seconds
        self.total_seconds = total_seconds
        self.created_at = datetime.now(UTC)
        self.exited_at: datetime | None = None
        self.exit_code: int | None = None
        self.signal: int | None = None
        self.ended_by: str | None = None
        self.exited = asyncio.Event()
        self._ring = ScrollbackRing(scrollback)
        self._viewers: set[Viewer] = set()
        self._on_exit = on_exit
        self._wbuf = bytearray()
        self._writing = False
        self._eof = False
        self._reaped = False
        self._pidfd: int | None = None
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._killer: asyncio.Task[None] | None = None
        self._last_activity = (loop := self._loop).time()
        self._proc: Any = PtyProcess.spawn(
            self.command,
            env=dict(env),
            dimensions=(rows, cols),
            preexec_fn=lambda: _child_setup(cwd),
        )
        self.pid: int = self._proc.pid
        self._fd: int = self._proc.fd
        try:
            os.set_blocking(self._fd, False)
            loop.add_reader(self._fd, self._on_readable)
            try:
                self._pidfd = os.pidfd_open(self.pid)
                loop.add_reader(self._pidfd, self._reap)
            except (AttributeError, OSError):  # no pidfds (old kernel, seccomp): poll instead
                self._timers["poll"] = loop.call_later(_POLL_S, self._reap)
            if idle_seconds is not None:
                self._timers["idle"] = loop.call_later(idle_seconds, self._check_idle)
            if total_seconds is not None:
                self._timers["total"] = loop.call_later(total_seconds, self._end, "total_time")
        except BaseException:
            with contextlib.suppress(OSError):
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)  # SIGKILLed: returns at once; leaves no zombie
            self._finish()
            raise

    @property
    def running(self) -> bool:
        """Whether the session has not ended yet."""
        return not self.exited.is_set()

    @property
    def total_written(self) -> int:
        """Bytes of output ever produced: the stream offset of the next byte."""
        return self._ring.total_written

    @property
    def viewers(self) -> int:
        """How many viewers are attached."""
        return len(self._viewers)

    def scrollback(self, since: int | None = None) -> bytes:
        """The newest output kept (from stream offset ``since`` when still kept)."""
        return self._ring.snapshot(since)

    def attach(
        self,
        *,
        since: int | None = None,
        max_pending: int = VIEWER_MAX_PENDING,
        screen: bool = False,
    ) -> Viewer:
        """A new viewer: its ``snapshot`` to replay, then :meth:`Viewer.read` for live output.

        The snapshot is taken and the viewer registered in one synchronous step, so no byte
        falls between them or arrives twice. A session that already ended gives a closed
        viewer with the final scrollback. ``screen``: a viewer that only draws the screen, to
        be skipped to the newest screenful when output piles up (see ``ring``), never lagged.
        """
        viewer = Viewer(
            self._ring,
            since,
            max_pending,
            detach=self.detach,
            label=self.id,
            screen_lines=self.rows + 1 if screen else None,
        )
        if self.exited.is_set():
            viewer._close()
        else:
            self._viewers.add(viewer)
        return viewer

    def detach(self, viewer: Viewer) -> None:
        """Stop sending output to ``viewer``; its unread bytes stay readable."""
        self._viewers.discard(viewer)
        viewer._close()

    def write(self, data: bytes) -> None:
        """Queue input for the child; written as fast as it reads, without blocking.

        Raises :class:`Conflict` after the session ended and :class:`PayloadTooLarge` when more
        than 8 MiB would be waiting.
        """
        if self.exited.is_set() or self._eof:
            raise Conflict(f"terminal {self.id} has exited", code="terminal_exited")
        if not data:
            return
        if len(self._wbuf) + len(data) > MAX_PENDING_INPUT:
            raise PayloadTooLarge(f"terminal {self.id} is not reading its input fast enough")
        self._wbuf += data
        self._last_activity = self._loop.time()
        if not self._writing:
            self._flush()

    def resize(self, rows: int, cols: int) -> None:
        """Set the window size; the child gets SIGWINCH. Ignored once the session ended."""
        check_size(rows, cols)
        self.rows, self.cols = rows, cols
        for viewer in self._viewers:
            if viewer.screen:
                viewer.screen_lines = rows + 1
        if self.running:
            with contextlib.suppress(OSError):  # the child ended meanwhile
                self._proc.setwinsize(rows, cols)

    async def kill(self, sig: int = signal.SIGTERM, *, grace: float = KILL_GRACE_S) -> None:
        """Send ``sig``, then SIGKILL after ``grace`` seconds; return once the session ended.

        The signal goes to every process group of the child's session: its pipeline, its
        foreground job and its background jobs. An interactive shell ignores SIGTERM, so it
        ends at the SIGKILL; processes that left the session (``setsid``) are not touched.
        """
        if self.exited.is_set():
            return
        self.ended_by = self.ended_by or "killed"
        self._signal(sig)
        try:
            await asyncio.wait_for(self.exited.wait(), grace)
            return
        except TimeoutError:
            self._signal(signal.SIGKILL)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.exited.wait(), DRAIN_S + 1.0)

    def _on_readable(self) -> None:
        # Read again until the pty has nothing more (or READ_CHUNK was read): a pty master
        # hands out a few KiB per read, and the kernel has often refilled it by the time one
        # read returns, so this saves a trip through the event loop for most reads.
        chunks: list[bytes] = []
        size = 0
        eof = False
        while size < READ_CHUNK:
            try:
                data = os.read(self._fd, READ_CHUNK - size)
            except BlockingIOError:
                break
            except OSError:  # EIO: every slave descriptor is closed
                data = b""
            if not data:
                eof = True
                break
            chunks.append(data)
            size += len(data)
        if chunks:
            data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            self._last_activity = self._loop.time()
            self._ring.append(data)
            for viewer in self._viewers:
                viewer._feed(data)
        if eof:
            self._stop_io()
            if self._reaped:
                self._finish()

    def _flush(self) -> None:
        try:
            written = os.write(self._fd, bytes(self._wbuf[:READ_CHUNK]))
        except BlockingIOError:
            written = 0
        except OSError:  # the child is gone: nobody will read the rest
            written = len(self._wbuf)
        del self._wbuf[:written]
        if self._wbuf and not self._writing:
            self._loop.add_writer(self._fd, self._flush)
            self._writing = True
        elif not self._wbuf and self._writing:
            self._loop.remove_writer(self._fd)
            self._writing = False

    def _stop_io(self) -> None:
        if not self._eof:
            self._eof = True
            self._loop.remove_reader(self._fd)
        if self._writing:
            self._loop.remove_writer(self._fd)
            self._writing = False

    def _reap(self) -> None:
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:  # reaped by someone else: the status is lost
            pid, status = self.pid, -1
        if pid == 0:
            self._timers["poll"] = self._loop.call_later(_POLL_S, self._reap)
            return
        self._reaped = True
        code = os.waitstatus_to_exitcode(status) if status >= 0 else None
        if code is not None:
            self.exit_code, self.signal = (code, None) if code >= 0 else (None, -code)
        self._close_pidfd()
        if self._eof:
            self._finish()
        else:
            self._timers["drain"] = self._loop.call_later(DRAIN_S, self._finish)

    def _close_pidfd(self) -> None:
        if self._pidfd is not None:
            self._loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None

    def _signal(self, sig: int) -> None:
        # Only while the child is unreaped: after that its pid, and so its session and group
        # ids, may be reused by a stranger. What it left is hung up when the master closes.
        if self._reaped or self.exited.is_set():
            return
        # The child leads a session of its own: signal each of its groups, so a pipeline, the
        # foreground job and the background jobs (each a group under an interactive shell) end.
        for group in _session_groups(self.pid) | {self.pid}:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, sig)

    def _check_idle(self) -> None:
        due = self._last_activity + (self.idle_seconds or 0.0)
        if self._loop.time() >= due:
            self._end("idle")
        else:
            self._timers["idle"] = self._loop.call_at(due, self._check_idle)

    def _end(self, reason: str) -> None:
        if self._reaped or self.exited.is_set() or self.ended_by is not None:
            return  # it ended already, or is being ended
        self.ended_by = reason
        self._killer = self._loop.create_task(self.kill())  # held: a bare task may be collected

    def _finish(self) -> None:
        if self.exited.is_set():
            return
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._close_pidfd()
        self._stop_io()
        self._wbuf = bytearray()
        # Close through ptyprocess's file object, which owns the descriptor, and mark it
        # closed so its __del__ does not run close(), which sleeps and signals.
        with contextlib.suppress(OSError):
            self._proc.fileobj.close()
        self._proc.closed = True
        self.exited_at = datetime.now(UTC)
        for viewer in self._viewers:
            viewer._close()
        self._viewers.clear()
        self.exited.set()
        if self._on_exit is not None:
            self._on_exit(self)


def check_size(rows: int, cols: int) -> None:
    """Raise :class:`InvalidInput` unless both sides are integers from 1 to ``MAX_SIDE``."""
    for side, size in (("rows", rows), ("cols", cols)):
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_SIDE:
            raise InvalidInput(f"{side} must be an integer from 1 to {MAX_SIDE}, not {size!r}")


def _session_groups(sid: int) -> set[int]:
    """The process groups of session ``sid``, from /proc (none found without it)."""
    groups = set()
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            with contextlib.suppress(OSError, IndexError, ValueError):
                if entry.name.isdigit():
                    with open(f"/proc/{entry.name}/stat", "rb") as fh:
                        fields = fh.read().rsplit(b")", 1)[1].split()
                    if int(fields[3]) == sid:  # after the name: state ppid pgrp session
                        groups.add(int(fields[2]))
    return groups


def _child_setup(cwd: str) -> None:
    # In the forked child, before exec. An exception here reaches the parent through
    # ptyprocess's error pipe and the child exits; with ptyprocess's own ``cwd`` a failed
    # chdir would raise inside a running copy of the daemon.
    os.chdir(cwd)
    for name in _RESET_SIGNALS:
        # ValueError: forked from another thread than the main one; only ignored signals
        # then stay as inherited.
        with contextlib.suppress(ValueError, OSError):
            signal.signal(getattr(signal, name), signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, ())
