"""Skipping through terminal output that comes faster than a screen viewer can draw it.

A viewer that only draws the screen (the console's terminal pane has no scrollback) loses
nothing visible when it skips everything but the newest screenful of a flood: the skipped lines
would have scrolled off anyway. Two things make the skip correct:

- it starts where a line or an escape sequence starts (:func:`tail_start`), never inside one;
- the state the skipped stretch set, and that the tail relies on, is replayed before the tail
  (:class:`ModeState`): DEC modes (alternate screen, cursor keys, bracketed paste, cursor
  visibility, autowrap, origin) and the scrolling region, which a program that keeps a status
  line sets once and never again.

:func:`skip_to_tail` does both, for a screen viewer of the daemon (``view=screen`` on the
attach), so a flood never crosses the socket; the scrollback ring keeps a :class:`ModeState` of
the bytes it has overwritten. Pure byte functions.
"""

from __future__ import annotations

import re

__all__ = ["ModeState", "carried_state", "skip_to_tail", "tail_start"]

# DEC private modes set or reset (CSI ? Pm h / l) and the scrolling region (CSI Pt ; Pb r).
_STATE = re.compile(rb"\x1b\[(\??)([0-9;]*)([hlr])")
# Cursor keys (1), origin (6), autowrap (7), cursor visible (25), alternate screens (47, 1047,
# 1049), bracketed paste (2004).
_KEPT_MODES = frozenset({1, 6, 7, 25, 47, 1047, 1049, 2004})


class ModeState:
    """The kept DEC modes and the scrolling region a stream has set so far, updated as the
    stream passes by (:meth:`update`), replayed as sequences (:meth:`replay`).

    A sequence split between two updates is missed: callers update at line or escape-sequence
    boundaries where they can, and a miss costs one mode, not the screen.
    """

    def __init__(self) -> None:
        self._last: dict[int | str, bytes] = {}

    def update(self, data: bytes | bytearray | memoryview) -> None:
        """Take in the next stretch of the stream."""
        last = self._last
        for private, params, final in _STATE.findall(data):
            if final == b"r":
                if not private:
                    last.pop("region", None)  # re-inserted: the order of the last settings kept
                    last["region"] = b"\x1b7\x1b[%sr\x1b8" % params
                continue
            if not private:
                continue
            for param in params.split(b";"):
                if param.isdigit() and int(param) in _KEPT_MODES:
                    mode = int(param)
                    last.pop(mode, None)
                    last[mode] = b"\x1b[?%d%s" % (mode, final)

    def replay(self) -> bytes:
        """The last setting of each kept mode and the last scrolling region, in the order they
        were last set. The region is replayed between a cursor save and restore (setting it
        homes the cursor)."""
        return b"".join(self._last.values())


def carried_state(data: bytes | bytearray | memoryview) -> bytes:
    """What ``data`` left set that a tail after it relies on, as sequences to replay (see
    :class:`ModeState`)."""
    state = ModeState()
    state.update(data)
    return state.replay()


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


def skip_to_tail(data: bytearray, *, lines: int, max_bytes: int) -> tuple[bytearray, int]:
    """``data`` with all but its tail (see :func:`tail_start`) replaced by the state the rest
    set, and the number of bytes skipped (0: ``data`` itself comes back, untouched)."""
    start = tail_start(data, lines=lines, max_bytes=max_bytes)
    if start <= 0:
        return data, 0
    with memoryview(data) as view:
        state = carried_state(view[:start])
        return bytearray(state) + view[start:], start
