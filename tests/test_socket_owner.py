"""RELIABILITY S1 from the client's side: another local user cannot receive a kyros request.

The attacker is a real process running as ``nobody`` that serves a socket where the victim's
client looks for its daemon (a runtime dir of mode 0777 without the sticky bit, as in the
report this drill comes from) and counts every byte it receives. The victim's client must
refuse before sending one, with an error naming the path and the owner it found.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kyros import paths as kpaths
from kyros.client import Client
from kyros.client.attach import open_attach
from kyros.client.discovery import DaemonTarget
from kyros.errors import UntrustedSocket
from tests.conftest import kyros_env, run_cli, xdg_dirs

pytestmark = pytest.mark.skipif(os.getuid() != 0, reason="runs the attacker as another user")

ATTACKER = r"""
import json, os, selectors, socket, sys
path = sys.argv[1]
os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(path)
os.chmod(path, 0o666)
srv.listen(16)
sel = selectors.DefaultSelector()
sel.register(srv, selectors.EVENT_READ, "accept")
sel.register(sys.stdin, selectors.EVENT_READ, "stdin")
got = {"connections": 0, "bytes": 0}
print("ready", flush=True)
while True:
    for key, _ in sel.select():
        if key.data == "accept":
            conn, _ = srv.accept()
            got["connections"] += 1
            sel.register(conn, selectors.EVENT_READ, "conn")
        elif key.data == "conn":
            data = key.fileobj.recv(65536)
            got["bytes"] += len(data)
            if not data:
                sel.unregister(key.fileobj)
                key.fileobj.close()
        else:
            print(json.dumps(got), flush=True)
            sys.exit(0)
"""


@dataclass
class Attacker:
    proc: subprocess.Popen[str]
    socket: Path

    def received(self) -> dict[str, int]:
        """Stop the attacker and return what it received."""
        out, err = self.proc.communicate("", timeout=10)
        assert self.proc.returncode == 0, err
        return dict(json.loads(out.splitlines()[-1]))


@pytest.fixture
def shared_runtime() -> Iterator[dict[str, str]]:
    """A victim's environment whose XDG_RUNTIME_DIR is mode 0777 without the sticky bit."""
    with xdg_dirs() as xdg:
        # The attacker must reach the shared dir: it lives outside the victim's 0700 temp base.
        runtime = Path(tempfile.mkdtemp(prefix="ky-shared-", dir="/tmp"))
        runtime.chmod(0o777)
        try:
            yield kyros_env(xdg, XDG_RUNTIME_DIR=str(runtime))
        finally:
            shutil.rmtree(runtime, ignore_errors=True)


@pytest.fixture
def attacker(shared_runtime: dict[str, str]) -> Iterator[Attacker]:
    sock = kpaths.resolve(shared_runtime).socket
    python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
    proc = subprocess.Popen(
        [python, "-I", "-S", "-c", ATTACKER, str(sock)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        user="nobody",
        group="nogroup",
        extra_groups=[],
        cwd="/",
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "ready", proc.stderr.read() if proc.stderr else ""
        yield Attacker(proc, sock)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


NOBODY = f"uid {pwd.getpwnam('nobody').pw_uid} (nobody)"


def test_the_client_sends_nothing_to_another_users_socket(
    shared_runtime: dict[str, str], attacker: Attacker
) -> None:
    assert os.stat(attacker.socket).st_uid == pwd.getpwnam("nobody").pw_uid
    r = run_cli(shared_runtime, "run", "plan", "the secret goal", "--detach", "--model", "demo")
    got = attacker.received()
    assert got == {"connections": 0, "bytes": 0}
    assert r.returncode == 4, r.stderr
    assert f"the kyros socket {attacker.socket} is owned by {NOBODY}" in r.stderr
    assert "nothing was sent" in r.stderr
    assert "Traceback" not in r.stderr
    # No daemon of the victim's was started over the attacker's socket either.
    assert not kpaths.resolve(shared_runtime).status_file.exists()


def test_the_peer_is_checked_even_when_the_path_looks_like_ours(
    shared_runtime: dict[str, str], attacker: Attacker
) -> None:
    # As if the attacker had swapped the socket in between the client's check and its
    # connect: the file and its directory now pass every check of the path.
    me = os.getuid()
    os.chown(attacker.socket.parent, me, me)
    os.chown(attacker.socket, me, me)
    attacker.socket.chmod(0o600)
    r = run_cli(shared_runtime, "runs", "list")
    assert r.returncode == 4, r.stderr
    assert f"the kyros socket {attacker.socket} is served by {NOBODY}" in r.stderr

    target = DaemonTarget(base_url="http://kyros", uds=str(attacker.socket), local=False)
    with Client(target) as client, pytest.raises(UntrustedSocket, match="served by uid"):
        client.request("POST", "/v1/runs/plan", json={"goal": "the secret goal"})
    with pytest.raises(UntrustedSocket, match="served by uid"):
        open_attach(target, "t1", rows=24, cols=80)
    got = attacker.received()
    assert got["connections"] == 3  # it was reached: the kernel's answer refused it
    assert got["bytes"] == 0


def test_the_terminal_attach_checks_the_socket_too(
    shared_runtime: dict[str, str], attacker: Attacker
) -> None:
    target = DaemonTarget(base_url="http://kyros", uds=str(attacker.socket), local=True)
    with pytest.raises(UntrustedSocket, match=re.escape(f"owned by {NOBODY}")):
        open_attach(target, "t1", rows=24, cols=80)
    assert attacker.received() == {"connections": 0, "bytes": 0}


def test_a_socket_others_can_write_is_refused(tmp_path: Path) -> None:
    import socket

    sock_path = tmp_path / "kyros.sock"
    with socket.socket(socket.AF_UNIX) as srv:
        srv.bind(str(sock_path))
        srv.listen(1)
        sock_path.chmod(0o666)
        target = DaemonTarget(base_url="http://kyros", uds=str(sock_path), local=False)
        with Client(target) as client, pytest.raises(UntrustedSocket, match="mode 666"):
            client.health()


# --------------------------------------------------------------------------------------------
# the daemon's side: where it keeps its socket


def test_runtime_dir_under_a_world_writable_parent_is_refused(tmp_path: Path) -> None:
    parent = tmp_path / "run"
    parent.mkdir(mode=0o777)
    parent.chmod(0o777)
    with pytest.raises(kpaths.UnsafeDirectory, match="without the sticky bit") as info:
        kpaths.ensure_runtime_dir(parent / "kyros")
    assert str(parent) in str(info.value)
    assert not (parent / "kyros").exists()


def test_runtime_dir_under_a_sticky_shared_parent_is_fine(tmp_path: Path) -> None:
    parent = tmp_path / "shared"
    parent.mkdir()
    parent.chmod(0o1777)
    made = kpaths.ensure_runtime_dir(parent / "a" / "b" / "kyros")
    for directory in (parent / "a", parent / "a" / "b", made):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory


def test_runtime_dir_under_another_users_parent_is_refused(tmp_path: Path) -> None:
    parent = tmp_path / "theirs"
    parent.mkdir(mode=0o755)
    os.chown(parent, 65534, 65534)
    with pytest.raises(kpaths.UnsafeDirectory, match="is owned by uid 65534"):
        kpaths.ensure_runtime_dir(parent / "kyros")
