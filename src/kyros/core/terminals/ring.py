"""The output of a terminal: its scrollback, and the viewers reading it, in bounded memory.

A :class:`ScrollbackRing` is one circular ``bytearray`` that grows up to its capacity on demand
and is then overwritten in place, so a terminal printing 100 MB holds exactly ``capacity`` bytes
of it and appending costs one ``memcpy`` with no allocation. Every byte ever written has a stream
offset (0 for the first byte); ``total_written`` is the offset of the next byte, which lets a
viewer say where it stopped and ask for what came after.

A :class:`Viewer` holds at most ``max_pending`` unread bytes. When it falls further behind, its
backlog is dropped and it is marked *lagged*: it receives nothing more until it calls
:meth:`Viewer.resync`, which hands it the scrollback and joins it to the live stream again.
Dropping bytes from the middle of a terminal stream would leave a screen wrong in ways nobody
could see (half an escape sequence, a lost clear); buffering without a cap would let one stuck
client hold the daemon's memory hostage. The scrollback is a consistent suffix of the stream, so
replaying it onto a reset screen is correct.

A *screen* viewer (one that draws the screen and keeps no scrollback, like the console's terminal
pane) never lags: output that piles up for it is skipped to its newest screenful, with the modes
and scrolling region the skipped part set replayed before it (:mod:`kyros.core.terminals.skipping`).
What it skips would have scrolled off its screen unseen; a flood then costs the socket, and the
client's emulator, a screenful per read instead of every byte.

A reader that sends each chunk on (the attach WebSocket) can ask :meth:`Viewer.read` to
*linger*: when output is streaming, wait a moment so that one message carries many pty reads
(a pty hands out a few KiB per read) instead of paying a WebSocket frame, a socket write and a
client wake-up for each. Small output (an echoed keystroke, a prompt) is never held back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from kyros.core.terminals.skipping import ModeState, skip_to_tail

__all__ = [
    "DEFAULT_SCROLLBACK",
    "LINGER_MIN",
    "SCREEN_MAX_PENDING",
    "SCREEN_SKIP_FROM",
    "SCREEN_TAIL_BYTES",
    "VIEWER_MAX_PENDING",
    "VIEWER_READ_MAX",
    "ScrollbackRing",
    "Viewer",
    "ViewerLagged",
]

#: 2 MiB is ~25,000 lines of 80 columns: a long build log, small next to the daemon.
DEFAULT_SCROLLBACK = 2 * 1024 * 1024
#: Unread bytes a viewer may hold: ~2 s of output at full speed, hours of an interactive shell.
VIEWER_MAX_PENDING = 4 * 1024 * 1024
#: Largest chunk :meth:`Viewer.read` returns: one WebSocket message of a sensible size.
VIEWER_READ_MAX = 256 * 1024
#: Pending output from which a lingering :meth:`Viewer.read` waits for more: a pty read this
#: large means a program is streaming; a keystroke's echo or a prompt is far smaller.
LINGER_MIN = 1024
#: A screen viewer's skip keeps at most this much: a full-screen program's redraw. Output
#: addressed by cursor moves (no newlines) is skipped only past it.
SCREEN_TAIL_BYTES = 64 * 1024
#: Unread output from which a screen viewer's read skips to the newest screenful: output with
#: more lines than the screen has rows. Below it, a read returns everything, skipping nothing.
SCREEN_SKIP_FROM = 8 * 1024
#: Unread output at which a screen viewer skips as it is fed (its memory bound): a multiple of
#: the tail, so cursor-addressed output is not rescanned at every pty read.
SCREEN_MAX_PENDING = 4 * SCREEN_TAIL_BYTES


class ScrollbackRing:
    """Keeps the newest ``capacity`` bytes appended to it."""

    def __init__(self, capacity: int = DEFAULT_SCROLLBACK) -> None:
        if capacity <= 0:
            raise ValueError(f"capacity must be positive, not {capacity}")
        self.capacity = capacity
        #: Bytes ever appended; the stream offset one past the newest byte held.
        self.total_written = 0
        self._buf = bytearray()
        # Once the buffer is full, the index of its oldest byte, which is also where the next
        # byte goes. While it is still growing the oldest byte is at index 0.
        self._head = 0
        # The modes and scrolling region set by the bytes no longer held: a program that
        # switched to the alternate screen or set cursor keys hours ago relies on them still.
        self._forgotten = ModeState()

    def __len__(self) -> int:
        """The number of bytes held: ``capacity`` at most."""
        return len(self._buf)

    @property
    def start(self) -> int:
        """The stream offset of the oldest byte held."""
        return self.total_written - len(self._buf)

    def append(self, data: bytes | bytearray | memoryview) -> None:
        """Add ``data`` at the end, forgetting the oldest bytes past the capacity."""
        view = memoryview(data).cast("B")
        size = len(view)
        if not size:
            return
        self.total_written += size
        cap = self.capacity
        if size >= cap:
            # Only its tail survives: replace everything in one step.
            head = self._head
            self._forget(self._buf[head:], self._buf[:head], view[: size - cap])
            self._buf[:] = view[size - cap :]
            self._head = 0
            return
        room = cap - len(self._buf)
        if room > 0:
            taken = min(room, size)
            self._buf += view[:taken]
            view = view[taken:]
            size -= taken
            if not size:
                return
        # Full: overwrite the oldest bytes, wrapping at the end. Same-length slice assignment
        # copies in place; the bytearray never reallocates from here on.
        head = self._head
        first = min(size, cap - head)
        self._forget(self._buf[head : head + first], self._buf[: size - first])
        self._buf[head : head + first] = view[:first]
        rest = size - first
        if rest:
            self._buf[:rest] = view[first:]
        self._head = (head + size) % cap

    def _forget(self, *stretches: bytes | bytearray | memoryview) -> None:
        """Take the state out of bytes about to be overwritten, oldest first."""
        for stretch in stretches:
            if stretch:
                self._forgotten.update(stretch)

    def replay(self, since: int | None = None) -> bytes:
        """:meth:`snapshot`, preceded by the modes and scrolling region set by the bytes no
        longer held when it starts before :attr:`start`: what a screen needs to draw the
        snapshot as the full stream would have."""
        held = self.snapshot(since)
        if since is not None and since >= self.start:
            return held
        return self._forgotten.replay() + held

    def snapshot(self, since: int | None = None) -> bytes:
        """The bytes held, oldest first; from stream offset ``since`` when it is still held.

        An offset older than :attr:`start` gives everything held (the caller can tell bytes
        were lost by comparing its offset with :attr:`start`); one at or past
        :attr:`total_written` gives ``b""``.
        """
        skip = 0 if since is None else min(max(since - self.start, 0), len(self._buf))
        head = self._head
        # Slicing a view copies nothing; it is released on leaving, as a live view would stop
        # the next append from resizing the buffer.
        with memoryview(self._buf) as buf:
            if head == 0:
                return bytes(buf[skip:])
            # The logical order is buf[head:] then buf[:head]; skip into it.
            older = len(buf) - head
            if skip >= older:
                return bytes(buf[skip - older : head])
            return b"".join((buf[head + skip :], buf[:head]))


class ViewerLagged(Exception):
    """The viewer fell more than its ``max_pending`` bytes behind; call :meth:`Viewer.resync`."""


class Viewer:
    """One reader of a terminal's output: the scrollback to replay first, then the live bytes.

    ``snapshot`` is the scrollback from ``since`` (see :meth:`ScrollbackRing.replay`), from
    stream offset ``start``; ``position`` is the offset of the next byte :meth:`read` returns,
    so a client that reconnects can attach with ``since=position``.
    One task reads a viewer; each client attaches its own.
    """

    def __init__(
        self,
        ring: ScrollbackRing,
        since: int | None,
        max_pending: int,
        *,
        detach: Callable[[Viewer], None],
        label: str,
        screen_lines: int | None = None,
    ) -> None:
        self.max_pending = max_pending
        #: A screen viewer's rows plus one (the session keeps it in step with resizes): how
        #: many lines a skip keeps. None: a stream viewer, which gets every byte or lags.
        self.screen_lines = screen_lines
        self.lagged = False
        #: Bytes dropped for this viewer while it lagged (the newest come back at a resync), or
        #: skipped for a screen viewer.
        self.dropped = 0
        self.snapshot = ring.replay(since)
        self.position = ring.total_written
        #: The stream offset the snapshot's scrollback starts from.
        self.start = min(max(since or 0, ring.start), self.position)
        if self.screen:  # its screen is all it draws of the scrollback
            self.snapshot = bytes(self._screenful(bytearray(self.snapshot))[0])
        self._ring = ring
        self._detach = detach
        self._label = label
        self._pending = bytearray()
        self._ready = asyncio.Event()
        self._want = 1  # pending bytes at which a waiting reader is woken
        self._closed = False

    @property
    def closed(self) -> bool:
        """Detached, or its terminal ended; :meth:`read` returns what is left, then ``b""``."""
        return self._closed

    async def read(self, max_bytes: int = VIEWER_READ_MAX, *, linger: float = 0.0) -> bytes:
        """The next output, at most ``max_bytes``; ``b""`` once closed and drained.

        With ``linger`` (seconds), output that is streaming — at least ``LINGER_MIN`` bytes
        pending — is held until ``max_bytes`` are pending or ``linger`` has passed, so it comes
        back in one piece; smaller output returns at once.
        Raises :class:`ViewerLagged` when output was dropped for this viewer.
        """
        while True:
            if self.lagged:
                raise ViewerLagged(
                    f"viewer fell more than {self.max_pending} bytes behind terminal "
                    f"{self._label}; resync from the scrollback"
                )
            if self.screen and len(self._pending) > SCREEN_SKIP_FROM:
                self._skip()
            pending = len(self._pending)
            if pending:
                if linger > 0 and LINGER_MIN <= pending < max_bytes and not self._closed:
                    await self._gather(max_bytes, linger)
                    linger = 0.0  # once: then whatever is there goes
                    continue
                if pending <= max_bytes:
                    data = bytes(self._pending)
                    self._pending.clear()
                else:
                    data = bytes(self._pending[:max_bytes])
                    del self._pending[:max_bytes]  # O(1) at the front of a bytearray
                self.position += len(data)
                return data
            if self._closed:
                return b""
            self._ready.clear()
            await self._ready.wait()

    async def _gather(self, size: int, timeout: float) -> None:
        """Wait until ``size`` bytes are pending, ``timeout`` passed, or the viewer lagged or
        closed. :meth:`_feed` wakes the reader only at ``size``, not at every chunk."""
        self._want = size
        self._ready.clear()
        timer = asyncio.get_running_loop().call_later(timeout, self._ready.set)
        try:
            await self._ready.wait()
        finally:
            timer.cancel()
            self._want = 1

    def resync(self) -> bytes:
        """Leave the lagged state: the scrollback to replay on a reset screen.

        :meth:`read` continues right after it, with no gap and no repeat.
        """
        self.snapshot = self._ring.replay()
        self.position = self._ring.total_written
        self.start = self._ring.start
        self._pending = bytearray()
        self.lagged = False
        return self.snapshot

    def detach(self) -> None:
        """Stop receiving output; what was already received stays readable."""
        self._detach(self)

    @property
    def screen(self) -> bool:
        """Whether this viewer only draws the screen: skipped to its newest screenful, never
        lagged."""
        return self.screen_lines is not None

    def _screenful(self, data: bytearray) -> tuple[bytearray, int]:
        """``data`` skipped to the newest screenful, and the bytes skipped (a screen viewer)."""
        assert self.screen_lines is not None
        return skip_to_tail(data, lines=self.screen_lines, max_bytes=SCREEN_TAIL_BYTES)

    def _skip(self) -> None:
        """Skip the unread output to its newest screenful."""
        before = len(self._pending)
        self._pending, skipped = self._screenful(self._pending)
        self.dropped += skipped
        # The replayed state stands for the bytes skipped: once everything unread has been
        # read, ``position`` is the stream offset again.
        self.position += before - len(self._pending)

    def _feed(self, data: bytes) -> None:
        if self._closed:
            return
        if self.screen:
            self._pending += data
            if len(self._pending) > SCREEN_MAX_PENDING:
                self._skip()
            if len(self._pending) >= self._want:
                self._ready.set()
            return
        if self.lagged:
            self.dropped += len(data)
            return
        if len(self._pending) + len(data) > self.max_pending:
            self.lagged = True
            self.dropped += len(self._pending) + len(data)
            self._pending = bytearray()  # release the backlog's memory now
            self._ready.set()
        else:
            self._pending += data
            if len(self._pending) >= self._want:
                self._ready.set()

    def _close(self) -> None:
        self._closed = True
        self._ready.set()
