"""Daemon-owned terminals on real ptys: output and exit status, interactive input, resize,
viewers joining mid-stream, the environment allow-list, output bursts with a draining and a
stuck viewer, kill and limits, shutdown, names, and the scrollback ring."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import resource
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from ptyprocess import PtyProcess

from kyros.core.terminals import (
    ScrollbackRing,
    TerminalManager,
    TerminalSession,
    Viewer,
    ViewerLagged,
)
from kyros.errors import Conflict, InvalidInput, NotFound

SH = "/bin/sh"
PAGE = resource.getpagesize()
MiB = 1024 * 1024
RING = 2 * MiB  # the default scrollback
# Memory a burst may add: the ring, one viewer's cap, and slack for the allocator and the
# snapshots `Watch` takes. Well below a burst's size, so keeping the stream would show.
RSS_BOUND = RING + 4 * MiB + 10 * MiB


@pytest.fixture(scope="module")
def burst() -> tuple[int, float]:
    """How many bytes `head` writes in a burst test, and the pty's own speed (bytes/s).

    The kernel bounds a pty's throughput, and the bound varies widely between machines (6 MB/s
    on a 2-core VM), so a burst is sized to take ~3 s at the speed a blocking reader gets here:
    100 MiB where the pty is fast, never less than 16 MiB (24 MiB out, 4x ``RSS_BOUND``).
    """
    proc = PtyProcess.spawn([SH, "-c", f"yes | head -c {2 * MiB}"])
    got, started = 0, time.monotonic()
    with contextlib.suppress(OSError):  # EIO at the end
        while chunk := os.read(proc.fd, 1 << 16):
            got += len(chunk)
    rate = got / (time.monotonic() - started)
    proc.close()
    size = min(max(int(rate * 3 / 1.5) // MiB, 16), 100) * MiB  # 1.5: "y\n" comes out "y\r\n"
    return size, rate


@pytest.fixture
def cwd(tmp_path: Path) -> str:
    return str(tmp_path)


@pytest.fixture
async def manager() -> AsyncIterator[TerminalManager]:
    terminals = TerminalManager(kill_grace=0.5)
    yield terminals
    await terminals.close_all(grace=0.2)


async def read_until(viewer: Viewer, pattern: bytes | None, timeout: float = 10.0) -> bytes:
    """Live output until regex ``pattern`` matches, or all of it (``None``) until the end."""
    seen = bytearray()
    async with asyncio.timeout(timeout):
        while pattern is None or not re.search(pattern, seen):
            if not (chunk := await viewer.read()):
                break
            seen += chunk
    return bytes(seen)


async def read_all(viewer: Viewer) -> bytes:
    return await read_until(viewer, None)


async def ended(session: TerminalSession, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        await session.exited.wait()


def rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * PAGE


def alive(pid: int) -> bool:
    """Whether ``pid`` runs; zombies (reparented orphans nobody reaps) do not count."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in (b"Z", b"X")


# --- output, input, viewers -----------------------------------------------------------------------


async def test_output_and_exit_status(manager: TerminalManager, cwd: str) -> None:
    session = manager.create([SH, "-c", "echo hello; exit 3"], cwd=cwd)
    viewer = session.attach()
    assert b"hello" in await read_all(viewer)
    await ended(session)
    assert (session.exit_code, session.signal, session.ended_by) == (3, None, None)
    assert not session.running and session.exited_at is not None
    assert b"hello" in session.scrollback()
    late = session.attach()  # after the end: the final scrollback, then end of stream
    assert b"hello" in late.snapshot and await late.read() == b""
    with pytest.raises(Conflict, match="exited"):
        session.write(b"x")


async def test_interactive_shell_and_resize(manager: TerminalManager, cwd: str) -> None:
    session = manager.create([SH], cwd=cwd, rows=24, cols=80)
    viewer = session.attach()
    session.write(b"echo $((6*7))\n")
    assert b"42\r\n" in await read_until(viewer, b"42\r\n")
    session.resize(30, 100)
    session.write(b"stty size\n")
    assert b"30 100" in await read_until(viewer, b"30 100")
    assert (session.rows, session.cols) == (30, 100)

    other = session.attach()
    session.write(b"echo both-$((1+1))\n")
    first, second = await asyncio.gather(
        read_until(viewer, b"both-2\r\n"), read_until(other, b"both-2\r\n")
    )
    assert b"both-2\r\n" in first and b"both-2\r\n" in second
    session.write(b"exit 0\n")
    await ended(session)
    assert session.exit_code == 0


async def test_late_viewer_joins_without_gap_or_repeat(manager: TerminalManager, cwd: str) -> None:
    count = "while [ $i -lt $n ]; do echo $i; i=$((i+1)); done"
    script = f"i=0; n=4000; {count}; read go; n=8000; {count}"
    session = manager.create([SH, "-c", script], cwd=cwd)
    early = session.attach()
    head = await read_until(early, b"\r\n1500\r\n")  # joins while the first loop streams
    late = session.attach()
    assert late.snapshot and late.start == 0
    session.write(b"go\n")  # the second half is certainly live for both viewers
    early_all = head + await read_all(early)
    late_live = await read_all(late)
    assert late_live
    assert late.snapshot + late_live == early_all == session.scrollback()
    numbers = [int(line) for line in early_all.split(b"\r\n") if line.isdigit()]
    assert numbers == list(range(8000))


async def test_attach_since_offset(manager: TerminalManager, cwd: str) -> None:
    session = manager.create([SH, "-c", "echo one; read x; echo two"], cwd=cwd)
    first = session.attach()
    await read_until(first, b"one\r\n")
    mark = first.position
    session.write(b"\n")
    await ended(session)
    again = session.attach(since=mark)
    assert again.start == mark and again.snapshot.endswith(b"two\r\n")
    assert b"one" not in again.snapshot


async def test_environment_is_allow_listed(
    manager: TerminalManager, cwd: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-sentinel-0451")
    monkeypatch.setenv("KYROS_TOKEN", "kyros-sentinel-0451")
    monkeypatch.setenv("LC_TIME", "C")
    session = manager.create(["env"], cwd=cwd, env_extra={"EXTRA_VAR": "present"})
    out = await read_all(session.attach())
    await ended(session)
    assert b"sentinel" not in out and b"OPENAI_API_KEY" not in out and b"KYROS_" not in out
    assert b"TERM=xterm-256color" in out and b"EXTRA_VAR=present" in out
    assert b"LC_TIME=C" in out and b"PATH=" in out


async def test_big_paste_does_not_block(manager: TerminalManager, cwd: str) -> None:
    session = manager.create([SH, "-c", "stty -echo; wc -c"], cwd=cwd)
    viewer = session.attach()
    paste = b"abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijk\n" * 16384
    started = time.monotonic()
    session.write(paste)
    session.write(b"\x04")  # end of input for `wc`
    assert time.monotonic() - started < 0.05  # queued, not written while we wait
    assert b"1048576" in await read_all(viewer)
    await ended(session)


# --- throughput and memory ------------------------------------------------------------------------


class Watch:
    """Samples event-loop lag, the scrollback's size and RSS while a burst runs."""

    def __init__(self, session: TerminalSession) -> None:
        self.session = session
        self.max_lag = 0.0
        self.max_ring = 0
        self.base_rss = self.max_rss = rss()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        ticks = 0
        while self.session.running:
            before = loop.time()
            await asyncio.sleep(0.01)
            self.max_lag = max(self.max_lag, loop.time() - before - 0.01)
            ticks += 1
            if ticks % 10 == 0:
                self.max_ring = max(self.max_ring, len(self.session.scrollback()))
                self.max_rss = max(self.max_rss, rss())

    def check(self) -> None:
        assert self.max_lag < 0.1, f"event loop stalled {self.max_lag * 1000:.0f} ms"
        assert self.max_ring == len(self.session.scrollback()) == RING
        assert self.max_rss - self.base_rss < RSS_BOUND


async def drain(viewer: Viewer) -> int:
    received = 0
    while chunk := await viewer.read():
        received += len(chunk)
    return received


async def test_burst_with_a_draining_viewer(
    manager: TerminalManager, cwd: str, burst: tuple[int, float]
) -> None:
    size, pty_rate = burst
    session = manager.create([SH, "-c", f"yes | head -c {size}"], cwd=cwd)
    viewer, watch = session.attach(), Watch(session)
    started = time.monotonic()
    received, _ = await asyncio.wait_for(asyncio.gather(drain(viewer), watch.run()), 25)
    rate = received / (time.monotonic() - started)
    await ended(session)
    assert session.exit_code == 0 and not viewer.lagged
    assert received == session.total_written == size * 3 // 2
    watch.check()
    # Reading keeps up: the pty, not the loop, sets the pace.
    assert rate > pty_rate / 4, f"{rate / 1e6:.1f} MB/s against the pty's {pty_rate / 1e6:.1f}"


async def test_burst_with_a_stuck_viewer(
    manager: TerminalManager, cwd: str, burst: tuple[int, float]
) -> None:
    size, _ = burst
    session = manager.create([SH, "-c", f"yes | head -c {size}"], cwd=cwd)
    stuck, reader, watch = session.attach(), session.attach(), Watch(session)
    received, _ = await asyncio.wait_for(asyncio.gather(drain(reader), watch.run()), 25)
    await ended(session)
    assert session.exit_code == 0 and received == session.total_written == size * 3 // 2
    assert not reader.lagged  # a stuck viewer holds up nobody else
    assert stuck.lagged and stuck.dropped > 0
    watch.check()
    with pytest.raises(ViewerLagged):
        await stuck.read()
    replay = stuck.resync()  # back in step: the scrollback, then the (ended) live stream
    assert len(replay) == RING and replay.endswith(b"y\r\ny\r\n")
    assert stuck.position == session.total_written and await stuck.read() == b""


# --- ending sessions ------------------------------------------------------------------------------


async def test_kill_ends_with_a_signal(manager: TerminalManager, cwd: str) -> None:
    session = manager.create(["sleep", "1000"], cwd=cwd)
    started = time.monotonic()
    await manager.kill(session.id)
    assert time.monotonic() - started < 2
    assert (session.signal, session.exit_code) == (signal.SIGTERM, None)
    assert session.ended_by == "killed" and not alive(session.pid)


async def test_kill_escalates_for_a_shell_ignoring_sigterm(
    manager: TerminalManager, cwd: str
) -> None:
    session = manager.create([SH], cwd=cwd)
    viewer = session.attach()
    session.write(b"echo ready; sleep 1000\n")
    await read_until(viewer, b"ready\r\n")
    await session.kill(grace=0.3)  # the foreground sleep dies; the interactive shell needs KILL
    assert session.signal == signal.SIGKILL


async def test_idle_and_total_limits(manager: TerminalManager, cwd: str) -> None:
    idle = manager.create(["sleep", "1000"], cwd=cwd, idle_seconds=0.3)
    chatty = manager.create(
        [SH, "-c", "while :; do echo x; sleep 0.05; done"],
        cwd=cwd,
        idle_seconds=0.6,
        total_seconds=1.2,
    )
    await ended(idle, 3)
    assert idle.ended_by == "idle" and idle.signal == signal.SIGTERM
    assert chatty.running  # its output keeps it from being idle
    await ended(chatty, 3)
    assert chatty.ended_by == "total_time"


async def test_close_all_leaves_no_process(manager: TerminalManager, cwd: str) -> None:
    plain = manager.create(["sleep", "1000"], cwd=cwd)
    parent = manager.create([SH, "-c", "sleep 1000 & echo bg=$!; wait"], cwd=cwd)
    shell = manager.create([SH], cwd=cwd)  # job control: its job gets a group of its own
    viewers = [parent.attach(), shell.attach()]
    shell.write(b"sleep 1000 & echo bg=$!\n")
    pids = [plain.pid, parent.pid, shell.pid]
    for viewer in viewers:
        out = await read_until(viewer, rb"bg=\d+\r\n")
        pids.append(int(re.findall(rb"bg=(\d+)\r\n", out)[-1]))
    assert all(alive(pid) for pid in pids)
    started = time.monotonic()
    await manager.close_all(grace=0.5)
    assert time.monotonic() - started < 3
    assert not any(s.running for s in manager.list())
    assert not [pid for pid in pids if alive(pid)]


# --- the manager ----------------------------------------------------------------------------------


async def test_names_ids_and_errors(manager: TerminalManager, cwd: str) -> None:
    build = manager.create([SH, "-c", "read x"], cwd=cwd, name="build")
    assert manager.get("build") is build and manager.get(build.id) is build
    with pytest.raises(Conflict, match="already named 'build'"):
        manager.create(["true"], cwd=cwd, name="build")
    with pytest.raises(NotFound, match="no terminal with id or name 'nope'"):
        manager.get("nope")
    with pytest.raises(Conflict, match="still running"):
        manager.remove("build")
    build.write(b"\n")
    await ended(build)
    again = manager.create(["sleep", "1000"], cwd=cwd, name="build")
    assert manager.get("build") is again  # the running one wins over the ended one
    manager.remove(build.id)
    assert build not in manager.list() and again in manager.list()

    for bad in ("", "-x", "a b", "x" * 65, again.id):
        with pytest.raises(InvalidInput, match="invalid terminal name"):
            manager.create(["true"], cwd=cwd, name=bad)
    with pytest.raises(InvalidInput, match="does not exist"):
        manager.create(["true"], cwd=cwd + "/missing")
    with pytest.raises(InvalidInput, match="absolute"):
        manager.create(["true"], cwd="relative")
    with pytest.raises(InvalidInput, match="command not found"):
        manager.create(["no-such-command-kyros"], cwd=cwd)
    with pytest.raises(InvalidInput, match="rows"):
        manager.create(["true"], cwd=cwd, rows=0)
    with pytest.raises(InvalidInput, match="idle_seconds"):
        manager.create(["true"], cwd=cwd, idle_seconds=-1)
    with pytest.raises(InvalidInput, match="environment variable"):
        manager.create(["true"], cwd=cwd, env_extra={"A=B": "x"})


async def test_default_shell_and_metadata(cwd: str) -> None:
    terminals = TerminalManager(environ={"SHELL": SH, "PATH": os.defpath}, kill_grace=0.2)
    session = terminals.create(cwd=cwd, run_id="r_1", rows=10, cols=40)
    try:
        assert session.command == [SH] and session.run_id == "r_1" and session.pid > 0
        assert session.id.startswith("t_") and session.cwd == cwd
        viewer = session.attach()
        session.write(b"pwd\n")
        assert cwd.encode() in await read_until(viewer, re.escape(cwd.encode()))
    finally:
        await terminals.close_all()


async def test_exited_sessions_are_kept_up_to_a_count(cwd: str) -> None:
    terminals = TerminalManager(keep_exited=2)
    sessions = [terminals.create(["true"], cwd=cwd) for _ in range(4)]
    for session in sessions:
        await ended(session)
    kept = terminals.list()
    assert len(kept) == 2 and all(s.exit_code == 0 for s in kept)


# --- the scrollback ring --------------------------------------------------------------------------


def test_ring_keeps_the_newest_bytes() -> None:
    ring = ScrollbackRing(10)
    ring.append(b"0123")
    assert ring.snapshot() == b"0123" and ring.start == 0
    ring.append(b"456789ab")
    assert ring.snapshot() == b"23456789ab" and (len(ring), ring.start) == (10, 2)
    ring.append(b"cd")
    assert ring.snapshot() == b"456789abcd" and ring.total_written == 14
    assert ring.snapshot(since=12) == b"cd" and ring.snapshot(since=5) == b"56789abcd"
    assert ring.snapshot(since=0) == ring.snapshot() and ring.snapshot(since=99) == b""
    ring.append(bytes(range(100, 125)))  # larger than the ring: only its tail stays
    ring.append(b"")
    assert ring.snapshot() == bytes(range(115, 125)) and ring.total_written == 39

    ring, whole = ScrollbackRing(1000), bytearray()  # against a plain buffer, across wraps
    for size in [1, 7, 999, 1000, 1001, 3, 500, 2500, 0, 64] * 5:
        chunk = os.urandom(size)
        ring.append(chunk)
        whole += chunk
        assert ring.snapshot() == whole[-1000:]
        assert ring.snapshot(since=len(whole) - 5) == whole[-5:]


def test_a_replay_carries_the_modes_set_by_bytes_no_longer_held() -> None:
    ring = ScrollbackRing(1000)
    ring.append(b"\x1b[?1049h\x1b[?1h\x1b[2;20r")  # alternate screen, cursor keys, region
    for n in range(50):  # wraps the ring many times, in pieces of every size
        ring.append(b"x" * (n * 37 % 700) + b"\r\n")
    ring.append(b"\x1b[?1l" + b"y" * 990)  # cursor keys reset, still held
    replay = ring.replay()
    assert replay.endswith(ring.snapshot()) and b"\x1b[?1l" in ring.snapshot()
    assert replay[: -len(ring.snapshot())] == b"\x1b[?1049h\x1b[?1h\x1b7\x1b[2;20r\x1b8"
    # From an offset it still holds, the replay is the snapshot alone.
    assert ring.replay(since=ring.start + 1) == ring.snapshot(since=ring.start + 1)
    ring.append(b"z" * 5000)  # one append larger than the ring forgets it all at once
    assert ring.replay().startswith(b"\x1b[?1049h\x1b7\x1b[2;20r\x1b8\x1b[?1l")
