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

What scrolled past unseen is not drawn (the daemon keeps it: `kyros term logs`); the modes and
scrolling region it set are replayed before the tail (:mod:`kyros.emulator.skipping`). The
daemon already skips a flood for the pane (it attaches as a screen viewer), so a cut here is
rare: the attach's scrollback, or a burst the emulator is slow at.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from kyros.emulator.skipping import skip_to_tail

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
            self._cut()

    def _cut(self) -> None:
        max_bytes = int(min(TAIL_BYTES, max(MIN_TAIL_BYTES, self.rate * self.max_behind / 2)))
        self._pending, skipped = skip_to_tail(
            self._pending, lines=self.tail_lines, max_bytes=max_bytes
        )
        self.skipped += skipped

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
