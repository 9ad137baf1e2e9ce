"""Keystroke-to-echo latency in the console's terminal pane while that terminal floods output,
beside the same pane with a quiet terminal.

The console runs as a user runs it (``python -m kyros tui``) in a real terminal: a ptyprocess pty
of :data:`ROWS` x :data:`COLS` that this process types into and reads. ``ctrl+t`` opens a shell
tab on a real daemon; a small program (:data:`PROGRAM`) is started in it. It puts the terminal
in raw mode, keeps the bottom row for a status line (``keys=N``: the bytes it has read) and, in
the flood run, writes coloured lines into the rows above as fast as the pty takes them,
rewriting the status line after each burst.

A keystroke is one byte written to the console's pty; its echo is the moment the console's own
output to that pty carries the status line with the new count: the key went through Textual's
input parser, the pane, the WebSocket, the daemon and the pty to the program, and the answer all
the way back through the emulator and a repaint. :data:`KEYS` keystrokes, :data:`GAP` apart
(random, so they do not fall in step with the repaints). Anchor: the same with the
program writing nothing but the status line. The two alternate :data:`ROUNDS` times and the
percentiles are over every keystroke of a kind (a p99 of one round is its second-worst sample,
which the machine's other work moves by tens of milliseconds). Target: p99 ≤ 50 ms under the
flood.

Every round runs under a load the benchmark makes itself: one busy loop per CPU
(:data:`LOAD_PROCESSES`), started once the console is up and stopped after the last round. With
the flooding program, the daemon and the console beside them, a 2-core machine's load is about 3:
a machine doing other work, not an idle one. The load average is reported with the numbers.

Also reported, not judged: one round under a flood of coloured cells written at random places
(``--cells``), with no newline the daemon could skip to: it sends such output up to 64 KiB a
message, as fast as the console draws it.
"""

from __future__ import annotations

import contextlib
import os
import random
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from benchmarks.common import (
    Result,
    log,
    median,
    percentile,
    process_env,
    running_daemon,
    temp_base,
    wait_idle,
    xdg_env,
)

ROWS, COLS = 40, 140
KEYS = 150
ROUNDS = 3
#: Seconds between keystrokes, drawn uniformly.
GAP = (0.02, 0.06)
#: Flooding before the first keystroke is timed.
WARM_UP = 2.0
#: A keystroke whose echo takes longer counts as this long (and the run goes on).
KEY_TIMEOUT = 2.0
TARGET_P99_MS = 50.0
#: Busy loops run beside the console while it is measured: one per CPU.
LOAD_PROCESSES = os.cpu_count() or 1

PROGRAM = r"""
import os, random, select, sys, termios, tty

flood = "--flood" in sys.argv or "--cells" in sys.argv
fd = sys.stdin.fileno()
saved = termios.tcgetattr(fd)
tty.setraw(fd)
cols, rows = os.get_terminal_size(fd)
keys = written = 0


def status():
    # The region is set again each time: output the pane skips may carry the first one away.
    return b"\x1b7\x1b[1;%dr\x1b[%d;1H\x1b[0;7m keys=%06d out=%dMB \x1b[0m\x1b8" % (
        rows - 1, rows, keys, written >> 20)


burst = b"".join(
    b"\x1b[3%dmflood %04d\x1b[0m %s\r\n" % (i % 7 + 1, i, b"." * (cols - 12))
    for i in range(32)
)
if "--cells" in sys.argv:  # no newline at all: coloured cells at random places
    burst = b"".join(
        b"\x1b[%d;%dH\x1b[3%dm#" % (random.randrange(1, rows - 1), random.randrange(1, cols), c)
        for c in [i % 7 + 1 for i in range(1200)]
    ) + b"\x1b[0m"
os.write(1, b"\x1b[2J\x1b[1;%dr\x1b[%d;1H" % (rows - 1, rows - 1) + status())
try:
    while True:
        ready, _, _ = select.select([fd], [], [], 0 if flood else None)
        if ready:
            data = os.read(fd, 1024)
            if b"\x04" in data:  # ctrl+d ends it
                break
            keys += len(data)
        if flood:
            os.write(1, burst)
            written += len(burst)
        os.write(1, status())
finally:
    os.write(1, b"\x1b[r\x1b[2J\x1b[H")
    termios.tcsetattr(fd, termios.TCSADRAIN, saved)
"""


class Console:
    """``kyros tui`` in a pty: bytes typed in, output read and searched."""

    def __init__(self, socket: Path, env: dict[str, str]) -> None:
        from ptyprocess import PtyProcess

        argv = [sys.executable, "-m", "kyros", "tui", "--daemon", f"unix://{socket}"]
        term_env = {**env, "TERM": "xterm-256color", "LANG": "C.UTF-8", "COLORTERM": "truecolor"}
        self.proc = PtyProcess.spawn(argv, env=term_env, dimensions=(ROWS, COLS))
        self._tail = b""
        #: Bytes of output read (the console's frames).
        self.read = 0

    def type(self, data: bytes) -> None:
        os.write(self.proc.fd, data)

    def _pump(self, timeout: float) -> bytes:
        ready, _, _ = select.select([self.proc.fd], [], [], max(0.0, timeout))
        if not ready:
            return b""
        try:
            data = os.read(self.proc.fd, 1 << 16)
        except OSError:  # EIO: the console closed its terminal
            raise RuntimeError("the console exited") from None
        self.read += len(data)
        return data

    def wait_for(self, needle: bytes, timeout: float) -> float | None:
        """Read until the output carries ``needle`` (across reads): when it did, or None."""
        deadline = time.perf_counter() + timeout
        while True:
            now = time.perf_counter()
            if now > deadline:
                return None
            data = self._pump(deadline - now)
            if not data:
                continue
            window = self._tail + data
            self._tail = window[-256:]
            if needle in window:
                self._tail = b""  # a later wait must see the text again
                return time.perf_counter()

    def drain(self, seconds: float) -> None:
        """Keep reading for ``seconds`` (a program whose terminal is not read stops)."""
        deadline = time.perf_counter() + seconds
        while (left := deadline - time.perf_counter()) > 0:
            data = self._pump(left)
            self._tail = (self._tail + data)[-256:]

    def close(self) -> None:
        if self.proc.isalive():
            self.type(b"\x11")  # ctrl+q
            deadline = time.monotonic() + 10
            while self.proc.isalive() and time.monotonic() < deadline:
                try:
                    self._pump(0.1)
                except RuntimeError:
                    break
        if self.proc.isalive():
            self.proc.terminate(force=True)


@contextlib.contextmanager
def busy_loops(count: int) -> Iterator[None]:
    """``count`` processes that spin the CPU for as long as the block runs (and end by
    themselves if this process dies first)."""
    spin = "import os\nparent = os.getppid()\nwhile os.getppid() == parent: pass"
    procs = [
        subprocess.Popen([sys.executable, "-c", spin], stdin=subprocess.DEVNULL)
        for _ in range(count)
    ]
    try:
        yield
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait(10)


def _latencies(console: Console, program: Path, flood: str, rng: random.Random) -> list[float]:
    """Start the program in the pane's shell (``flood``: "", "--flood" or "--cells"), type
    :data:`KEYS` keys, and end it."""
    command = f"{sys.executable} {program} {flood}\r"
    console.type(command.encode())
    if console.wait_for(b"keys=000000", 30) is None:
        raise RuntimeError("the program never showed its status line in the pane")
    if flood:
        console.drain(WARM_UP)
    samples = []
    for n in range(1, KEYS + 1):
        console.drain(rng.uniform(*GAP))
        t0 = time.perf_counter()
        console.type(b"k")
        echoed = console.wait_for(b"keys=%06d" % n, KEY_TIMEOUT)
        samples.append(KEY_TIMEOUT if echoed is None else echoed - t0)
        if echoed is None:
            log(f"keystroke {n}: no echo within {KEY_TIMEOUT:.0f} s")
            console.wait_for(b"keys=%06d" % n, 10)  # in step again before the next one
    console.type(b"\x04")  # ctrl+d: the program ends, the shell prompt is back
    console.drain(1.0)
    return samples


def run() -> list[Result]:
    rng = random.Random(11)
    load_before = os.getloadavg()[0]  # the machine's own, before this benchmark started
    with temp_base("kbu") as base:
        program = base / "flood.py"
        program.write_text(PROGRAM)
        env = process_env(xdg_env(base), SHELL="/bin/sh")
        with running_daemon(env) as daemon:
            wait_idle(daemon.pid)
            console = Console(daemon.socket, env)
            try:
                if console.wait_for(b"connected", 60) is None:
                    raise RuntimeError("the console never said it was connected")
                console.drain(1.0)
                console.type(b"\x14")  # ctrl+t: a new terminal, focused
                if console.wait_for(b"1 open", 30) is None:
                    raise RuntimeError("the console never opened a terminal")
                console.drain(1.0)  # the shell's prompt
                quiet: list[float] = []
                flooded: list[float] = []
                with busy_loops(LOAD_PROCESSES):
                    for _ in range(ROUNDS):
                        quiet += _latencies(console, program, flood="", rng=rng)
                        flooded += _latencies(console, program, flood="--flood", rng=rng)
                    cells = _latencies(console, program, flood="--cells", rng=rng)
                    load = os.getloadavg()[0]  # the last minute: the load made here, and others'
            finally:
                console.close()
    quiet_ms = [s * 1000 for s in quiet]
    flood_ms = [s * 1000 for s in flooded]
    p50, p99 = median(flood_ms), percentile(flood_ms, 99)
    q50, q99 = median(quiet_ms), percentile(quiet_ms, 99)
    cells_ms = [s * 1000 for s in cells]
    c50, c99 = median(cells_ms), percentile(cells_ms, 99)
    log(
        f"terminal pane echo: flood p50 {p50:.1f} / p99 {p99:.1f} / max {max(flood_ms):.1f} ms; "
        f"quiet p50 {q50:.1f} / p99 {q99:.1f} ms; cells flood p50 {c50:.1f} / p99 {c99:.1f} ms; "
        f"load average {load:.1f} ({load_before:.1f} before the benchmark)"
    )
    note = (
        f"{ROUNDS}x{KEYS} keys, {ROWS}x{COLS} console in a pty, `python -m kyros tui`, "
        f"{LOAD_PROCESSES} busy loop(s) beside it; load average {load:.1f} on {os.cpu_count()} "
        f"CPUs ({load_before:.1f} before the benchmark)"
    )
    return [
        Result(
            "tui terminal: key echo p50 under a flood",
            p50,
            "ms",
            "quiet terminal p50",
            q50,
            "reported",
            None,
            note,
        ),
        Result(
            "tui terminal: key echo p99 under a flood",
            p99,
            "ms",
            "quiet terminal p99",
            q99,
            f"≤ {TARGET_P99_MS:.0f} ms",
            p99 <= TARGET_P99_MS,
        ),
        Result(
            "tui terminal: key echo p99, a flood of cells",
            c99,
            "ms",
            "quiet terminal p99",
            q99,
            "reported",
            None,
            f"one round of {KEYS} keys; p50 {c50:.1f} ms; no newline to skip to, up to 64 KiB "
            "a message",
        ),
    ]
