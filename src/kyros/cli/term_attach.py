"""`kyros term attach`: a raw-mode client like `tmux attach`.

Keystrokes go to the daemon's terminal as typed; its output comes back as bytes. The local
terminal is put in raw mode and restored on every way out (detach, exit, errors, signals). Resizes
of the local terminal follow (SIGWINCH). OSC 52 (clipboard) and title changes from the session are
dropped before they reach the local terminal: a program in a shared session must not write to
the user's clipboard or retitle their window.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import sys
import threading
from dataclasses import dataclass, field
from typing import Any

#: OSC numbers never passed to the local terminal: 0/1/2 titles, 52 clipboard.
BLOCKED_OSC = frozenset({b"0", b"1", b"2", b"52"})
_MAX_OSC = 64 * 1024  # an unterminated OSC longer than this is dropped, not buffered forever


class OscFilter:
    """Drops blocked OSC sequences from a byte stream, sequences split across chunks included."""

    def __init__(self) -> None:
        self.pending = b""

    def feed(self, data: bytes) -> bytes:
        data = self.pending + data
        self.pending = b""
        out = bytearray()
        i = 0
        while True:
            start = data.find(b"\x1b]", i)
            if start < 0:
                tail = data[i:]
                if tail.endswith(b"\x1b"):  # maybe the start of an OSC: wait for the next byte
                    out += tail[:-1]
                    self.pending = b"\x1b"
                else:
                    out += tail
                return bytes(out)
            out += data[i:start]
            end, width = _osc_end(data, start + 2)
            if end < 0:
                if len(data) - start <= _MAX_OSC:
                    self.pending = data[start:]
                return bytes(out)
            body = data[start + 2 : end]
            number = body.split(b";", 1)[0]
            if number not in BLOCKED_OSC:
                out += data[start : end + width]
            i = end + width


def _osc_end(data: bytes, pos: int) -> tuple[int, int]:
    bel = data.find(b"\x07", pos)
    st = data.find(b"\x1b\\", pos)
    candidates = [(p, w) for p, w in ((bel, 1), (st, 2)) if p >= 0]
    return min(candidates) if candidates else (-1, 0)


@dataclass
class AttachResult:
    """How an attach ended: the user detached, or the session's program exited."""

    detached: bool = False
    exit: dict[str, Any] | None = None
    lagged: int = 0
    errors: list[str] = field(default_factory=list)


def terminal_size() -> tuple[int, int]:
    """(rows, cols) of the terminal we run in, asked of the tty itself.

    The tty comes first, before ``COLUMNS``/``LINES``: an exported value never follows a resize,
    so trusting it would pin the attached session to a stale size (``shutil`` prefers it).
    """
    for stream in (sys.stdout, sys.stdin):
        try:
            size = os.get_terminal_size(stream.fileno())
        except (OSError, ValueError):
            continue
        if size.lines and size.columns:
            return size.lines, size.columns
    fallback = shutil.get_terminal_size((80, 24))
    return fallback.lines, fallback.columns


def run_attach(conn: Any, *, detach_key: bytes = b"\x1c") -> AttachResult:
    """Pump stdin to ``conn`` and ``conn`` to stdout until detach or exit."""
    from websockets.exceptions import ConnectionClosed

    result = AttachResult()
    stdin = sys.stdin.fileno()
    stdout = sys.stdout.fileno()
    is_tty = os.isatty(stdin)
    wake_r, wake_w = os.pipe()
    done = threading.Event()
    osc = OscFilter()

    def pump_out() -> None:
        try:
            for message in conn:
                if isinstance(message, bytes):
                    _write_all(stdout, osc.feed(message))
                    continue
                control = json.loads(message)
                if control.get("type") == "exit":
                    result.exit = control
                    break
                if control.get("type") == "lagged":
                    result.lagged += 1
        except ConnectionClosed:
            pass
        except OSError as exc:
            result.errors.append(str(exc))
        finally:
            done.set()
            with contextlib.suppress(OSError):
                os.write(wake_w, b"x")

    def on_resize(*_: object) -> None:
        rows, cols = terminal_size()
        with contextlib.suppress(Exception):
            conn.send(json.dumps({"type": "resize", "rows": rows, "cols": cols}))

    saved = None
    previous_winch = None
    reader = threading.Thread(target=pump_out, name="kyros-attach-out", daemon=True)
    try:
        if is_tty:
            import termios
            import tty

            saved = termios.tcgetattr(stdin)
            tty.setraw(stdin)
            previous_winch = signal.signal(signal.SIGWINCH, on_resize)
        reader.start()
        while not done.is_set():
            ready, _, _ = select.select([stdin, wake_r], [], [])
            if wake_r in ready:
                break
            data = os.read(stdin, 4096)
            if not data:  # stdin closed (a pipe): keep showing output until the end
                reader.join()
                break
            if is_tty and detach_key in data:
                before = data.split(detach_key, 1)[0]
                if before:
                    conn.send(before)
                result.detached = True
                break
            conn.send(data)
    except ConnectionClosed:
        pass
    finally:
        if saved is not None:
            import termios

            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
        if previous_winch is not None:
            signal.signal(signal.SIGWINCH, previous_winch)
        with contextlib.suppress(Exception):
            conn.close()
        reader.join(timeout=2)
        os.close(wake_r)
        os.close(wake_w)
    return result


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
