"""How terminal output is framed for clients: streaming output is gathered into large pieces
(one WebSocket frame carries many pty reads), small output (echoes, prompts) goes at once, a
gathering read still stops at once for a lag or the end, and the local attach WebSocket is not
compressed."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kyros.core.terminals import ScrollbackRing, Viewer, ViewerLagged
from kyros.core.terminals.ring import LINGER_MIN
from tests.conftest import Daemon, kyros_env, start_daemon, xdg_dirs
from tests.test_terminals_e2e import _attach, _new

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
