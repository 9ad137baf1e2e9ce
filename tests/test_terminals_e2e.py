"""Daemon terminals end to end: `kyros term …` and the attach WebSocket over a real daemon.

Two clients attach to one shell and see the same output; one detaches and re-attaches and gets
the scrollback; the shell survives every disconnect; `exit` reports its status. S6: without a
token, with a wrong one, or from a foreign Origin the WebSocket is refused and 0 bytes reach the
pty. A 100 MiB burst leaves /healthz answering fast.
"""

from __future__ import annotations

import json
import select
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets.sync.client as ws_client
from websockets.exceptions import InvalidStatus

from tests.conftest import Daemon, kyros_env, start_daemon, xdg_dirs
from tests.test_security import TcpDaemon, sqlite_env, start_tcp

pytestmark = pytest.mark.e2e


def _target(d: Daemon) -> Any:
    from kyros.client.discovery import DaemonTarget

    return DaemonTarget(base_url="http://kyros", uds=str(d.socket), local=False)


def _attach(d: Daemon, ref: str) -> Any:
    from kyros.client.attach import open_attach

    return open_attach(_target(d), ref, rows=24, cols=80)


def _read_until(
    conn: Any, needle: bytes, timeout: float = 15
) -> tuple[bytes, dict[str, Any] | None]:
    """Bytes received until ``needle`` shows up (and the exit frame, if one came)."""
    got = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            message = conn.recv(timeout=max(0.05, deadline - time.monotonic()))
        except TimeoutError:
            break
        if isinstance(message, bytes):
            got += message
            if needle in got:
                return got, None
        else:
            control = json.loads(message)
            if control["type"] == "exit":
                return got, control
    raise AssertionError(f"{needle!r} not received; got {got[-400:]!r}")


def _exit_frame(conn: Any, timeout: float = 10) -> dict[str, Any] | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = conn.recv(timeout=max(0.05, deadline - time.monotonic()))
        if isinstance(message, str):
            control = json.loads(message)
            if control["type"] == "exit":
                return dict(control)
    return None


def _new(d: Daemon, *args: str) -> dict[str, Any]:
    out = d.cli("term", "new", "--json", *args)
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout))


def test_two_viewers_detach_reattach_and_exit_status(term_daemon: Daemon, tmp_path: Path) -> None:
    d = term_daemon
    term = _new(d, "--name", "shared-sh", "--cwd", str(tmp_path), "--", "/bin/sh")
    first, second = _attach(d, "shared-sh"), _attach(d, term["id"])
    try:
        first.send(b"echo hello-$((40+2))\r")
        assert b"hello-42" in _read_until(first, b"hello-42")[0]
        assert b"hello-42" in _read_until(second, b"hello-42")[0]  # both see the same output
        first.close()  # detach: the shell runs on
        listed = json.loads(d.cli("term", "ls", "--json").stdout)
        assert any(t["id"] == term["id"] and t["status"] == "running" for t in listed)
        again = _attach(d, "shared-sh")
        try:
            assert b"hello-42" in _read_until(again, b"hello-42")[0]  # the scrollback, replayed
        finally:
            again.close()
        sent = d.cli("term", "send", "shared-sh", "echo typed-$((2*3))")
        assert sent.returncode == 0, sent.stderr
        _read_until(second, b"typed-6")
        logs = d.cli("term", "logs", "shared-sh")
        assert logs.returncode == 0 and "typed-6" in logs.stdout and "\x1b" not in logs.stdout
        second.send(b"exit 7\r")
        assert _exit_frame(second) == {"type": "exit", "code": 7, "signal": None}
    finally:
        second.close()
    shown = json.loads(d.cli("term", "ls", "--json").stdout)
    state = next(t for t in shown if t["id"] == term["id"])
    assert state["status"] == "exited" and state["exit_code"] == 7


def test_an_attached_client_is_told_the_exit_status(term_daemon: Daemon, tmp_path: Path) -> None:
    term = _new(term_daemon, "--cwd", str(tmp_path), "--", "/bin/sh", "-c", "read x; exit 3")
    conn = _attach(term_daemon, term["id"])
    try:
        conn.send(b"go\r")
        assert _exit_frame(conn) == {"type": "exit", "code": 3, "signal": None}
    finally:
        conn.close()


def test_unknown_terminals_and_bad_input_are_clear_errors(term_daemon: Daemon) -> None:
    d = term_daemon
    for args in (["attach", "nope"], ["kill", "nope"], ["logs", "nope"], ["send", "nope", "x"]):
        out = d.cli("term", *args)
        assert out.returncode == 2 and "no terminal" in out.stderr, (args, out.stderr)
    bad = d.cli("term", "new", "--cwd", "/nonexistent/dir")
    assert bad.returncode == 2 and "not a directory" in bad.stderr
    missing = d.cli("term", "new", "--", "/no/such/program")
    assert missing.returncode == 2 and "/no/such/program" in missing.stderr


@pytest.fixture(scope="module")
def term_daemon() -> Iterator[Daemon]:
    """Terminals never touch the store: one SQLite daemon serves this module."""
    with xdg_dirs() as xdg:
        d = start_daemon(kyros_env(xdg))  # the default store: SQLite in the data dir
        try:
            yield d
        finally:
            d.stop()


@pytest.fixture(scope="module")
def tcp_daemon() -> Iterator[TcpDaemon]:
    with xdg_dirs() as xdg:
        td = start_tcp(sqlite_env(xdg))
        try:
            yield td
        finally:
            td.daemon.stop()


def test_s6_refused_handshakes_reach_no_pty(tcp_daemon: TcpDaemon, tmp_path: Path) -> None:
    sink = tmp_path / "received"
    with httpx.Client(base_url=f"http://127.0.0.1:{tcp_daemon.port}", timeout=10) as c:
        r = c.post(
            "/v1/terminals",
            json={"command": ["/bin/sh", "-c", f"cat > {sink}"], "cwd": str(tmp_path)},
            headers=tcp_daemon.auth(),
        )
        assert r.status_code == 201, r.text
        term_id = r.json()["id"]
    uri = f"ws://127.0.0.1:{tcp_daemon.port}/v1/terminals/{term_id}/attach"
    attempts = {
        "no token": {},
        "wrong token": {"Authorization": "Bearer kyr_" + "x" * 43},
        "foreign origin": {**tcp_daemon.auth(), "Origin": "https://evil.example"},
        "null origin": {**tcp_daemon.auth(), "Origin": "null"},
    }
    for label, headers in attempts.items():
        with (
            pytest.raises(InvalidStatus) as refused,
            ws_client.connect(uri, additional_headers=headers, open_timeout=5),
        ):
            pass
        assert refused.value.response.status_code in (401, 403), label
    # The right token and no Origin: accepted, and what it types arrives.
    with ws_client.connect(uri, additional_headers=tcp_daemon.auth(), open_timeout=5) as ok:
        ok.send(b"only-this\n")
        time.sleep(0.5)
    time.sleep(0.3)
    assert sink.read_bytes() == b"only-this\n"  # no byte of a refused client reached the pty


def test_a_100_mib_burst_keeps_the_daemon_responsive(term_daemon: Daemon, tmp_path: Path) -> None:
    d = term_daemon
    # A fresh daemon imports its AI backend in a thread for its first seconds, stalling the loop
    # on its own (see /readyz "ai"); what is measured here is the burst alone.
    deadline = time.monotonic() + 60
    with d.client() as c:
        while c.ready()["checks"]["ai"]["detail"] != "loaded":
            assert time.monotonic() < deadline, c.ready()
            time.sleep(0.1)
    term = _new(d, "--cwd", str(tmp_path), "--", "/bin/sh", "-c", "yes | head -c 104857600")
    conn = _attach(d, term["id"])
    received = 0
    done = threading.Event()

    def drain() -> None:
        nonlocal received
        try:
            for message in conn:
                if isinstance(message, bytes):
                    received += len(message)
                elif json.loads(message)["type"] == "exit":
                    break
        finally:
            done.set()

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    latencies = []
    with d.client() as c:
        while not done.is_set():
            t0 = time.perf_counter()
            c.health()
            latencies.append(time.perf_counter() - t0)
            time.sleep(0.05)
    reader.join(timeout=60)
    conn.close()
    assert done.is_set()
    assert received >= 100 * 2**20  # the pty turns \n into \r\n: at least the raw bytes
    assert latencies and max(latencies) < 0.1, f"slowest /healthz {max(latencies) * 1000:.0f} ms"


def test_cli_attach_in_a_real_terminal_detaches_and_restores_it(
    term_daemon: Daemon, tmp_path: Path
) -> None:
    """`kyros term attach` under a pty: typed keys reach the shell, OSC 52 from the session does
    not reach the local terminal, Ctrl-\\ detaches, the session runs on, the tty is sane again."""
    import ptyprocess

    d = term_daemon
    _new(d, "--name", "cli-sh", "--cwd", str(tmp_path), "--", "/bin/sh")
    script = (
        "stty -a > before.txt; "
        f"{sys.executable} -m kyros term attach cli-sh; echo ATTACH-EXIT=$?; "
        "stty -a > after.txt"
    )
    proc = ptyprocess.PtyProcess.spawn(
        ["/bin/sh", "-c", script], cwd=str(tmp_path), env=d.env, dimensions=(30, 100)
    )
    seen = b""

    def read_until(needle: bytes, timeout: float = 20) -> None:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while needle not in seen:
            assert time.monotonic() < deadline, f"{needle!r} not seen: {seen[-500:]!r}"
            if proc.fd in select.select([proc.fd], [], [], 0.2)[0]:
                try:
                    seen += proc.read(65536)
                except EOFError:
                    break

    try:
        # The client starts (Python) and attaches; type only once the daemon counts it.
        deadline = time.monotonic() + 30
        while not any(
            t["name"] == "cli-sh" and t["viewers"] >= 1
            for t in json.loads(d.cli("term", "ls", "--json").stdout)
        ):
            assert time.monotonic() < deadline, "the attach never reached the daemon"
            time.sleep(0.2)
        proc.write(b"printf '\\033]52;c;cHduZWQ=\\007'; echo size=$(stty size)\r")
        read_until(b"size=30 100")  # the resize followed the local terminal
        assert b"\x1b]52" not in seen  # the clipboard escape was dropped
        proc.write(b"\x1c")  # Ctrl-\ : detach
        read_until(b"ATTACH-EXIT=0")
        proc.wait()
    finally:
        if proc.isalive():
            proc.terminate(force=True)
    listed = json.loads(d.cli("term", "ls", "--json").stdout)
    assert any(t["name"] == "cli-sh" and t["status"] == "running" for t in listed)
    assert (tmp_path / "before.txt").read_text() == (tmp_path / "after.txt").read_text()


def test_terminal_settings_scrollback_and_inherited_env(tmp_path: Path) -> None:
    """`terminal_scrollback` bounds what a session keeps; `terminal_env` adds a variable of the
    daemon's environment to the allow-list while keys stay out; a bad detach key is refused."""
    with xdg_dirs() as xdg:
        env = kyros_env(
            xdg,
            KYROS_TERMINAL_SCROLLBACK="65536",
            KYROS_TERMINAL_ENV="BUILD_FLAVOUR",
            BUILD_FLAVOUR="debug",
            OPENAI_API_KEY="sk-sentinel-0451",
        )
        d = start_daemon(env)
        try:
            show = "echo flavour=$BUILD_FLAVOUR key=${OPENAI_API_KEY:-none}"
            _new(d, "--name", "env", "--cwd", str(tmp_path), "--", "/bin/sh", "-c", show)
            flood = "head -c 300000 /dev/zero | tr '\\0' x; echo; echo END-OF-FLOOD"
            _new(d, "--name", "flood", "--cwd", str(tmp_path), "--", "/bin/sh", "-c", flood)
            deadline = time.monotonic() + 20
            while {
                t["name"]: t["status"] for t in json.loads(d.cli("term", "ls", "--json").stdout)
            } != {"env": "exited", "flood": "exited"}:
                assert time.monotonic() < deadline, "the sessions did not end"
                time.sleep(0.1)
            shown = d.cli("term", "logs", "env").stdout
            assert "flavour=debug key=none" in shown
            conn = _attach(d, "flood")  # an ended session still replays its scrollback
            try:
                replay, _ = _read_until(conn, b"END-OF-FLOOD")
            finally:
                conn.close()
            assert b"END-OF-FLOOD" in replay
            # 300 kB went through; the ring kept its newest 64 KiB, not the default 2 MiB.
            assert 60_000 <= len(replay) <= 65536
            bad = d.cli("term", "attach", "env", "--detach-key", "ctrl-12")
            assert bad.returncode == 2 and "--detach-key" in bad.stderr
        finally:
            d.stop()
