"""The client against a lying or slow daemon: version skew says "restart", garbage is an error
with an exit code, never a traceback (RELIABILITY A3)."""

from __future__ import annotations

import secrets
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import kyros_env, run_cli


class _LyingDaemon:
    """A raw HTTP/1.1 server on a Unix socket answering every request with one canned reply."""

    def __init__(self, path: Path, reply: bytes, delay: float = 0.0) -> None:
        self.path, self.reply, self.delay = path, reply, delay
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    conn.recv(65536)
                    time.sleep(self.delay)
                    conn.sendall(self.reply)
                except OSError:
                    pass

    def close(self) -> None:
        self.stopping = True
        self.thread.join(5)
        self.sock.close()


def _http(status: str, body: bytes, version: str = "1") -> bytes:
    return (
        f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\n"
        f"x-kyros-api-version: {version}\r\ncontent-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    ).encode() + body


@pytest.fixture
def sock_path() -> Iterator[Path]:
    path = Path(f"/tmp/kyl-{secrets.token_hex(4)}.sock")
    yield path
    path.unlink(missing_ok=True)


def test_version_skew_asks_for_a_restart(xdg: dict[str, str], sock_path: Path) -> None:
    fake = _LyingDaemon(sock_path, _http("200 OK", b'{"runs": []}', version="99"))
    try:
        out = run_cli(kyros_env(xdg), "--daemon", f"unix://{sock_path}", "runs", "list")
    finally:
        fake.close()
    assert out.returncode == 3
    assert "restart the daemon" in out.stderr and "v99" in out.stderr


@pytest.mark.parametrize(
    "reply",
    [
        b"this is not http\r\n\r\n",
        _http("200 OK", b"{not json"),
        _http("500 Internal Server Error", b"<html>oops</html>"),
    ],
)
def test_garbage_answers_are_clear_errors(
    xdg: dict[str, str], sock_path: Path, reply: bytes
) -> None:
    fake = _LyingDaemon(sock_path, reply)
    try:
        out = run_cli(kyros_env(xdg), "--daemon", f"unix://{sock_path}", "runs", "list")
    finally:
        fake.close()
    assert out.returncode in (1, 3), out
    assert out.stderr.startswith("kyros:") and "Traceback" not in out.stderr


def test_slow_daemon_times_out_with_exit_3(xdg: dict[str, str], sock_path: Path) -> None:
    fake = _LyingDaemon(sock_path, _http("200 OK", b"{}"), delay=8)
    try:
        started = time.monotonic()
        out = run_cli(kyros_env(xdg), "--daemon", f"unix://{sock_path}", "daemon", "status")
        elapsed = time.monotonic() - started
    finally:
        fake.close()
    assert out.returncode == 3 and "cannot reach" in out.stderr
    assert elapsed < 8


def test_malformed_daemon_address(xdg: dict[str, str]) -> None:
    out = run_cli(kyros_env(xdg), "--daemon", "ftp://x", "runs", "list")
    assert out.returncode == 2 and "not understood" in out.stderr
