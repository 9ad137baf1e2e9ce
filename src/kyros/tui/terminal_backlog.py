"""Terminal output waiting to be drawn, fed to the emulator in time-boxed slices.

The emulator is pure Python: it takes 0.4 MB/s of ``yes`` (a scroll per 3 bytes) to ~5 MB/s of
plain text on a 2-core box. Fed in one go, a large message (the attach's scrollback, a
full-screen program's redraw) would hold the loop for tens of milliseconds, and a keystroke
with it. So :meth:`Backlog.drain` feeds pieces sized from the rate measured so far and stops once
its budget is spent; the view lets keys and repaints in between.

Nothing is skipped here. The pane attaches as a screen viewer, so the daemon already skips a
flood to its newest screenful (:mod:`kyros.core.terminals.skipping`) and sends at most one
message a frame; what arrives is drawn whole. Cutting it again here would cut a full-screen
program's redraw short and leave rows of its screen blank.
"""

from __future__ import annotations

import time
from collections.abc import Callable

#: Each piece fed takes about this long at the measured rate: the budget is checked between
#: pieces, so a keystroke waits at most a budget plus one piece.
PIECE_S = 0.002
#: Feed rate assumed before one is measured: the slowest case (``yes``).
INITIAL_RATE = 400_000.0
#: Pieces are never smaller than this (tiny pieces measure the clock, not the rate).
MIN_PIECE = 256


class Backlog:
    """Bytes received and not yet fed to ``feed``; :meth:`drain` feeds within a time budget.

    ``clock`` is injectable for tests; ``feed`` is the emulator's.
    """

    def __init__(
        self,
        feed: Callable[[bytes], None],
        *,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._feed = feed
        self._pending = bytearray()
        self._clock = clock
        #: Bytes per second the emulator took, smoothed over the recent pieces.
        self.rate = INITIAL_RATE
        #: Bytes fed so far.
        self.fed = 0

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, data: bytes) -> None:
        """Queue output to be fed."""
        self._pending += data

    def drain(self, budget_s: float) -> bool:
        """Feed pending bytes for about ``budget_s`` seconds; True when some are still left."""
        clock = self._clock
        started = clock()
        while self._pending:
            size = max(MIN_PIECE, int(self.rate * PIECE_S))
            chunk = bytes(self._pending[:size])
            del self._pending[:size]
            t0 = clock()
            self._feed(chunk)
            took = clock() - t0
            self.fed += len(chunk)
            if took > 0 and len(chunk) >= MIN_PIECE:
                self.rate = 0.7 * self.rate + 0.3 * (len(chunk) / took)
            if clock() - started >= budget_s:
                break
        return bool(self._pending)
