"""`kyros term attach`: a raw-mode client like `tmux attach`.

Keystrokes go to the daemon's terminal as typed; its output comes back as bytes. The local
terminal is put in raw mode and restored on every way out (detach, exit, errors, signals). Resizes
of the local terminal follow (SIGWINCH). Clipboard and title escapes, device-control strings and
the queries a terminal would answer by typing into the session are dropped before they reach the
local terminal (:mod:`kyros.cli.escape_filter`).
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

from kyros.cli.escape_filter import EscapeFilter


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
    escapes = EscapeFilter()

    def pump_out() -> None:
        try:
            for message in conn:
                if isinstance(message, bytes):
                    _write_all(stdout, escapes.feed(message))
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
