"""Terminal output waiting to be drawn: fed to the emulator in time-boxed slices, and cut short
when it arrives faster than it can be drawn.

The emulator is pure Python: it takes 0.4 MB/s of ``yes`` (a scroll per 3 bytes) to ~5 MB/s of
plain text on a 2-core box, while a pty delivers hundreds of MB/s. A console that fed every byte
would fall seconds behind a flood, and a keystroke's echo would wait behind it. So the backlog is
judged in time: when what is pending would take longer than :data:`MAX_BEHIND_S` to feed at the
rate measured so far, everything but its tail is skipped — a screenful of the newest lines, or
half that time's worth of bytes, whichever is shorter, cut where a line or an escape sequence
starts. The tail must be fed well within the time a new flood of output takes to arrive: a tail
that took longer would be cut away by the next one before its end (the newest screen) is drawn.

What scrolled past unseen is not drawn (the daemon keeps it: `kyros term logs`). The state a
skipped stretch set and the tail relies on is replayed before the tail: DEC modes (alternate
screen, cursor keys, bracketed paste, cursor visibility, autowrap, origin) and the scrolling
region, which a program that keeps a status line sets once and never again.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

#: How far behind the live output the screen may fall before the backlog is cut.
MAX_BEHIND_S = 0.02
#: A cut keeps at most this much, however fast the emulator: a full-screen program's redraw.
TAIL_BYTES = 64 * 1024
#: ... and at least this much, however slow.
MIN_TAIL_BYTES = 4 * 1024
#: A cut keeps at most this many lines (the view sets its screen's rows, plus one).
TAIL_LINES = 25
#: Each piece fed takes about this long at the measured rate: the budget is checked between
#: pieces, so a keystroke waits at most a budget plus one piece.
PIECE_S = 0.002
#: The smallest backlog ever cut (~20 ms of ``yes``).
MIN_CUT_BYTES = 8 * 1024
#: Feed rate assumed before one is measured: the slowest case (``yes``).
INITIAL_RATE = 400_000.0

# DEC private modes set or reset (CSI ? Pm h / l) and the scrolling region (CSI Pt ; Pb r).
_STATE = re.compile(rb"\x1b\[(\??)([0-9;]*)([hlr])")
# Cursor keys (1), origin (6), autowrap (7), cursor visible (25), alternate screens (47, 1047,
# 1049), bracketed paste (2004).
_KEPT_MODES = frozenset({1, 6, 7, 25, 47, 1047, 1049, 2004})


def carried_state(data: bytes | bytearray | memoryview) -> bytes:
    """What ``data`` left set that a tail after it relies on, as sequences to replay: the last
    setting of each kept DEC mode and the last scrolling region, in the order they were last
    set. The region is replayed between a cursor save and restore (setting it homes the
    cursor)."""
    last: dict[int | str, bytes] = {}
    for private, params, final in _STATE.findall(data):
        if final == b"r":
            if not private:
                last.pop("region", None)  # re-inserted: the order of the last settings is kept
                last["region"] = b"\x1b7\x1b[%sr\x1b8" % params
            continue
        if not private:
            continue
        for param in params.split(b";"):
            if param.isdigit() and int(param) in _KEPT_MODES:
                mode = int(param)
                last.pop(mode, None)
                last[mode] = b"\x1b[?%d%s" % (mode, final)
    return b"".join(last.values())


def tail_start(data: bytes | bytearray, *, lines: int, max_bytes: int) -> int:
    """Where a cut of ``data`` starts: the later of ``lines`` lines and ``max_bytes`` bytes
    before its end, moved forward to the start of a line or an escape sequence."""
    end = len(data)
    start = max(0, end - max_bytes)
    pos = end
    for _ in range(lines):
        pos = data.rfind(b"\n", start, pos)
        if pos < 0:
            break
    else:
        return pos + 1  # ``lines`` newlines within the byte limit: start after the last one
    if start == 0:
        return 0
    newline, escape = data.find(b"\n", start), data.find(b"\x1b", start)
    found = [p for p in (newline + 1 if newline >= 0 else -1, escape) if p >= 0]
    return min(found) if found else start


class Backlog:
    """Bytes received and not yet fed to ``feed``; :meth:`drain` feeds within a time budget.

    ``clock`` is injectable for tests; ``feed`` is the emulator's.
    """

    def __init__(
        self,
        feed: Callable[[bytes], None],
        *,
        max_behind: float = MAX_BEHIND_S,
        tail_lines: int = TAIL_LINES,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._feed = feed
        self.tail_lines = tail_lines
        self._pending = bytearray()
        self._clock = clock
        self.max_behind = max_behind
        #: Bytes per second the emulator took, smoothed over the recent slices.
        self.rate = INITIAL_RATE
        #: Bytes skipped so far (never drawn).
        self.skipped = 0
        #: Bytes fed so far.
        self.fed = 0

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, data: bytes) -> None:
        """Queue output; cut the backlog when it is more than ``max_behind`` seconds of work."""
        self._pending += data
        if len(self._pending) > max(self.rate * self.max_behind, MIN_CUT_BYTES):
            self._cut(self._tail_start())

    def restart(self, data: bytes) -> None:
        """Output that follows a gap (the daemon skipped some): what is pending is stale, and
        ``data`` is drawn over the screen as it is, with the state the stale part set."""
        self.skipped += len(self._pending)
        self._pending = bytearray(carried_state(self._pending))
        self.add(data)

    def _tail_start(self) -> int:
        max_bytes = int(min(TAIL_BYTES, max(MIN_TAIL_BYTES, self.rate * self.max_behind / 2)))
        return tail_start(self._pending, lines=self.tail_lines, max_bytes=max_bytes)

    def _cut(self, start: int) -> None:
        if start <= 0:
            return
        pending = self._pending
        state = carried_state(memoryview(pending)[:start])
        self.skipped += start
        self._pending = bytearray(state) + pending[start:]

    def drain(self, budget_s: float) -> bool:
        """Feed pending bytes for about ``budget_s`` seconds; True when some are still left."""
        clock = self._clock
        started = clock()
        while self._pending:
            size = max(256, int(self.rate * PIECE_S))
            chunk = bytes(self._pending[:size])
            del self._pending[:size]
            t0 = clock()
            self._feed(chunk)
            took = clock() - t0
            self.fed += len(chunk)
            if took > 0 and len(chunk) >= 256:  # tiny chunks measure the clock, not the rate
                self.rate = 0.7 * self.rate + 0.3 * (len(chunk) / took)
            if clock() - started >= budget_s:
                break
        return bool(self._pending)
