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

A reader that sends each chunk on (the attach WebSocket) can ask :meth:`Viewer.read` to
*linger*: when output is streaming, wait a moment so that one message carries many pty reads
(a pty hands out a few KiB per read) instead of paying a WebSocket frame, a socket write and a
client wake-up for each. Small output (an echoed keystroke, a prompt) is never held back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = [
    "DEFAULT_SCROLLBACK",
    "LINGER_MIN",
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
        self._buf[head : head + first] = view[:first]
        rest = size - first
        if rest:
            self._buf[:rest] = view[first:]
        self._head = (head + size) % cap

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

    ``snapshot`` starts at stream offset ``start``; ``position`` is the offset of the next byte
    :meth:`read` returns, so a client that reconnects can attach with ``since=position``.
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
    ) -> None:
        self.max_pending = max_pending
        self.lagged = False
        #: Bytes dropped for this viewer while it lagged (the newest come back at a resync).
        self.dropped = 0
        self.snapshot = ring.snapshot(since)
        self.position = ring.total_written
        self.start = self.position - len(self.snapshot)
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

    def resync(self, limit: int | None = None) -> bytes:
        """Leave the lagged state: the scrollback to replay on a reset screen (its newest
        ``limit`` bytes at most: a viewer that only draws the screen needs no more).

        :meth:`read` continues right after it, with no gap and no repeat.
        """
        since = None if limit is None else self._ring.total_written - limit
        self.snapshot = self._ring.snapshot(since)
        self.position = self._ring.total_written
        self.start = self.position - len(self.snapshot)
        self._pending = bytearray()
        self.lagged = False
        return self.snapshot

    def detach(self) -> None:
        """Stop receiving output; what was already received stays readable."""
        self._detach(self)

    def _feed(self, data: bytes) -> None:
        if self._closed:
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
