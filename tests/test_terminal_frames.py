"""How terminal output is framed for clients: streaming output is gathered into large pieces
(one WebSocket frame carries many pty reads), small output (echoes, prompts) goes at once, a
gathering read still stops at once for a lag or the end, and the local attach WebSocket is not
compressed. A screen client is skipped to the newest screenful, with the modes the skipped
output set, and is never lagged."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kyros.core.terminals import ScrollbackRing, Viewer, ViewerLagged
from kyros.core.terminals.ring import (
    LINGER_MIN,
    SCREEN_MAX_PENDING,
    SCREEN_SKIP_FROM,
    SCREEN_TAIL_BYTES,
)
from kyros.emulator import TerminalEmulator
from tests.conftest import Daemon, kyros_env, start_daemon, xdg_dirs
from tests.test_terminals_e2e import _attach, _new, _target

KiB = 1024
CHUNK = 4 * KiB  # about what one read of a pty master returns


def _viewer(max_pending: int = 1024 * KiB) -> Viewer:
    ring = ScrollbackRing(64 * KiB)
    viewer = Viewer(ring, None, max_pending, detach=lambda v: None, label="t_test")
    return viewer


def _feed_later(viewer: Viewer, chunks: list[bytes], every: float) -> None:
    loop = asyncio.get_running_loop()
    for n, chunk in enumerate(chunks, 1):
        loop.call_later(n * every, viewer._feed, chunk)


async def test_streaming_output_is_gathered_into_one_read() -> None:
    viewer = _viewer()
    viewer._feed(b"a" * CHUNK)
    _feed_later(viewer, [b"b" * CHUNK, b"c" * CHUNK, b"d" * CHUNK], 0.005)
    data = await asyncio.wait_for(viewer.read(4 * CHUNK, linger=5.0), 2)
    # Returned as soon as the piece was full, well before the linger ran out.
    assert data == b"a" * CHUNK + b"b" * CHUNK + b"c" * CHUNK + b"d" * CHUNK
    assert viewer.position == 4 * CHUNK


async def test_without_linger_each_read_returns_what_is_there() -> None:
    viewer = _viewer()
    viewer._feed(b"a" * CHUNK)
    _feed_later(viewer, [b"b" * CHUNK], 0.005)
    assert await viewer.read(4 * CHUNK) == b"a" * CHUNK


async def test_a_linger_ends_with_what_came_meanwhile() -> None:
    viewer = _viewer()
    viewer._feed(b"a" * CHUNK)
    _feed_later(viewer, [b"b" * 10], 0.01)
    started = time.monotonic()
    data = await viewer.read(linger=0.1)
    assert data == b"a" * CHUNK + b"b" * 10
    assert 0.09 <= time.monotonic() - started < 1.0


async def test_small_output_is_never_held_back() -> None:
    viewer = _viewer()
    _feed_later(viewer, [b"x"], 0.01)  # an echoed keystroke
    started = time.monotonic()
    assert await viewer.read(linger=5.0) == b"x"
    viewer._feed(b"p" * (LINGER_MIN - 1))  # a prompt
    assert await viewer.read(linger=5.0) == b"p" * (LINGER_MIN - 1)
    assert time.monotonic() - started < 1.0


async def test_a_gathering_read_stops_at_once_when_the_viewer_lags_or_closes() -> None:
    viewer = _viewer(max_pending=16 * KiB)
    viewer._feed(b"a" * CHUNK)
    _feed_later(viewer, [b"b" * 16 * KiB], 0.01)  # past max_pending: lagged
    with pytest.raises(ViewerLagged):
        await asyncio.wait_for(viewer.read(linger=5.0), 1)
    viewer.resync()
    viewer._feed(b"c" * CHUNK)
    asyncio.get_running_loop().call_later(0.01, viewer._close)  # the terminal ended
    assert await asyncio.wait_for(viewer.read(linger=5.0), 1) == b"c" * CHUNK
    assert await viewer.read(linger=5.0) == b""


# --- over the attach WebSocket of a real daemon ---------------------------------------------------


@pytest.fixture(scope="module")
def frames_daemon() -> Iterator[Daemon]:
    with xdg_dirs() as xdg:
        d = start_daemon(kyros_env(xdg))
        try:
            yield d
        finally:
            d.stop()


@pytest.mark.e2e
def test_streaming_output_reaches_the_client_in_large_frames(
    frames_daemon: Daemon, tmp_path: Path
) -> None:
    size = 4 * 1024 * KiB
    term = _new(
        frames_daemon,
        "--cwd",
        str(tmp_path),
        "--",
        "/bin/sh",
        "-c",
        f"read x; yes | head -c {size}",
    )
    conn = _attach(frames_daemon, term["id"])
    try:
        assert not conn.protocol.extensions  # no permessage-deflate on the local socket
        conn.send(b"go\r")
        received, frames = 0, 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            message = conn.recv(timeout=max(0.05, deadline - time.monotonic()))
            if isinstance(message, bytes):
                received += len(message)
                frames += 1
            elif json.loads(message)["type"] == "exit":
                break
    finally:
        conn.close()
    assert received >= size * 3 // 2  # "y\n" comes out as "y\r\n"
    # A pty read returns at most a few KiB; one frame per read would average under 4 KiB.
    assert received / frames >= 2 * CHUNK, f"{frames} frames for {received} bytes"


# --- screen viewers: skipped to the newest screenful, never lagged --------------------------------

ROWS = 9  # the screen's; its viewer keeps ROWS + 1 newlines: ROWS lines and the cursor's


def _screen_viewer() -> Viewer:
    ring = ScrollbackRing(1024 * KiB)
    return Viewer(
        ring, None, 16 * KiB, detach=lambda v: None, label="t_test", screen_lines=ROWS + 1
    )


def _lines(first: int, count: int) -> bytes:
    return b"".join(b"\x1b[32mline %06d\x1b[0m\r\n" % i for i in range(first, first + count))


async def test_a_screen_viewer_gets_the_newest_screenful_with_the_modes_skipped_output_set() -> (
    None
):
    viewer = _screen_viewer()
    # A status-line program: cursor keys, bracketed paste and a scrolling region set once.
    setup = b"\x1b[?1h\x1b[?2004h\x1b[1;%dr" % (ROWS - 1)
    viewer._feed(setup)
    fed = len(setup)
    for n in range(0, 100_000, 1000):  # ~2 MB: far past its max_pending, yet it never lags
        viewer._feed(_lines(n, 1000))
        fed += len(_lines(n, 1000))
        assert len(viewer._pending) <= SCREEN_MAX_PENDING
    data = await viewer.read()
    assert not viewer.lagged and len(data) < 2 * KiB  # a screenful, not megabytes
    assert data.count(b"\n") == ROWS and data.endswith(_lines(100_000 - ROWS, ROWS))
    # Its position is the stream's again, as if it had read every byte.
    assert viewer.position == fed and viewer.dropped > fed - 2 * KiB

    # Drawn on a screen, it is what the whole stream would have drawn.
    whole, skipped = (
        TerminalEmulator(cols=40, rows=ROWS),
        TerminalEmulator(cols=40, rows=ROWS),
    )
    whole.feed(setup + _lines(0, 100_000))
    skipped.feed(data)
    assert skipped.display_lines() == whole.display_lines()
    assert skipped.application_cursor_keys and skipped.bracketed_paste


async def test_a_screen_viewer_is_not_skipped_while_it_keeps_up() -> None:
    viewer = _screen_viewer()
    chunk = _lines(0, 100)  # 100 lines, but under SCREEN_SKIP_FROM: all of it comes
    assert len(chunk) < SCREEN_SKIP_FROM
    viewer._feed(chunk)
    assert await viewer.read() == chunk
    # A full-screen program's redraw has no newlines to cut at: kept whole up to a tail's size.
    redraw = b"".join(b"\x1b[%d;1H\x1b[44m%s" % (y % 50 + 1, b"x" * 100) for y in range(400))
    assert SCREEN_SKIP_FROM < len(redraw) < SCREEN_TAIL_BYTES
    viewer._feed(redraw)
    assert await viewer.read() == redraw and viewer.dropped == 0


@pytest.mark.e2e
def test_a_flood_reaches_a_slow_screen_client_as_its_newest_screen(
    frames_daemon: Daemon, tmp_path: Path
) -> None:
    from kyros.client.attach import open_attach

    count = 300_000
    flood = tmp_path / "flood.py"
    flood.write_text(
        "import os, sys\n"
        "sys.stdin.readline()\n"
        "os.write(1, b'\\x1b[?1h')\n"
        f"for n in range(0, {count}, 1000):\n"
        "    os.write(1, b''.join(b'row %06d\\n' % i for i in range(n, n + 1000)))\n"
        "os.write(1, b'done\\n')\n"
        "sys.stdin.readline()\n"
    )
    term = _new(frames_daemon, "--cwd", str(tmp_path), "--", sys.executable, str(flood))
    conn = open_attach(_target(frames_daemon), term["id"], rows=24, cols=80, screen=True)
    screen = TerminalEmulator(cols=80, rows=24, scrollback=0)
    received, controls = 0, []
    try:
        conn.send(b"go\r")
        deadline = time.monotonic() + 60
        while "done" not in screen.display_lines():
            assert time.monotonic() < deadline, screen.display_lines()
            message = conn.recv(timeout=max(0.05, deadline - time.monotonic()))
            if isinstance(message, bytes):
                received += len(message)
                screen.feed(message)
                time.sleep(0.02)  # a client that takes its time over each message
                conn.send(json.dumps({"type": "drawn"}))
            else:
                controls.append(json.loads(message))
        # A screen client attaching now is sent the newest screenful of the 2 MiB scrollback.
        late = open_attach(_target(frames_daemon), term["id"], rows=24, cols=80, screen=True)
        try:
            snapshot = late.recv(timeout=10)
        finally:
            late.close()
        conn.send(b"\r")
    finally:
        conn.close()
    assert isinstance(snapshot, bytes) and len(snapshot) < 1024
    again = TerminalEmulator(cols=80, rows=24, scrollback=0)
    again.feed(snapshot)
    assert again.display_lines() == screen.display_lines() and again.application_cursor_keys
    assert controls == []  # never lagged, never reset
    lines = screen.display_lines()
    done = lines.index("done")
    assert lines[done - 22 : done] == [f"row {i:06d}" for i in range(count - 22, count)]
    assert screen.application_cursor_keys  # set before the flood, carried over the skip
    # "row 000000\r\n" is 12 bytes: a tenth of the output crossed the socket, at most.
    assert received < count * 12 // 10, f"{received} bytes of {count * 12}"


@pytest.mark.e2e
def test_a_screen_client_is_sent_a_flood_only_as_fast_as_it_draws(
    frames_daemon: Daemon, tmp_path: Path
) -> None:
    """Each message a screen client answers ``drawn`` lets the next one go; one that does not
    answer is sent a couple of messages a second, not the flood."""
    from kyros.client.attach import open_attach

    term = _new(frames_daemon, "--cwd", str(tmp_path), "--", "/bin/sh", "-c", "read x; yes")
    counts = {}
    try:
        for answers in (False, True):
            conn = open_attach(_target(frames_daemon), term["id"], rows=24, cols=80, screen=True)
            try:
                conn.send(b"go\r")
                messages, deadline = 0, time.monotonic() + 1.5
                while (left := deadline - time.monotonic()) > 0:
                    try:
                        message = conn.recv(timeout=left)
                    except TimeoutError:
                        break
                    if isinstance(message, bytes):
                        messages += 1
                        if answers:
                            conn.send(json.dumps({"type": "drawn"}))
                counts[answers] = messages
            finally:
                conn.close()
    finally:
        with frames_daemon.client() as c:
            c.kill_terminal(term["id"])
    assert counts[False] <= 10, counts  # the scrollback, two ahead, then one per 0.5 s
    assert counts[True] >= 15, counts  # as fast as it draws (~40 quiet), up to a frame each
