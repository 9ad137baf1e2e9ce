"""`kyros tui` driven from a real terminal: tmux runs it against a real daemon, keys go in with
`send-keys`, the screen comes back with `capture-pane`.

The console starts and shows the runs, opens a terminal pane (`ctrl+t`) whose shell echoes what
is typed, and quits on `ctrl+q` with exit code 0, leaving the terminal as it found it (`stty -a`
before and after, from the same pane). tmux runs on a private socket with no configuration, so
nothing of a user's tmux is touched.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import FAST_QUEUE, Daemon, database, kyros_env, start_daemon, xdg_dirs

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
]


class Tmux:
    """One tmux server on its own socket, one session in it."""

    def __init__(self, socket: Path, env: dict[str, str]) -> None:
        self.socket = socket
        self.env = env

    def __call__(self, *args: str) -> str:
        out = subprocess.run(
            ["tmux", "-S", str(self.socket), "-f", "/dev/null", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return out.stdout

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "kyros")

    def wait_for(self, *needles: str, timeout: float = 30) -> str:
        """The pane's text once it shows every one of ``needles``."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.screen()
            if all(n in text for n in needles):
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"{needles} not on screen after {timeout:.0f}s:\n{text}")
            time.sleep(0.1)


@pytest.fixture(scope="module")
def tmux_daemon() -> Iterator[Daemon]:
    with xdg_dirs() as env, database("sqlite", env) as url:
        d = start_daemon(kyros_env(env, KYROS_DATABASE_URL=url, SHELL="/bin/sh", **FAST_QUEUE))
        try:
            yield d
        finally:
            d.stop()


@pytest.fixture
def tmux(tmux_daemon: Daemon, tmp_path: Path) -> Iterator[Tmux]:
    env = {**tmux_daemon.env, "LANG": "C.UTF-8", "TERM": "xterm-256color"}
    env.pop("TMUX", None)  # a test run inside tmux must not talk to the user's server
    server = Tmux(Path(f"/tmp/kt-{tmp_path.name[-8:]}-{time.monotonic_ns() % 10**6}.sock"), env)
    try:
        yield server
    finally:
        subprocess.run(
            ["tmux", "-S", str(server.socket), "kill-server"], env=env, capture_output=True
        )
        server.socket.unlink(missing_ok=True)


def test_the_console_in_tmux_opens_a_terminal_and_quits_cleanly(
    tmux_daemon: Daemon, tmux: Tmux, tmp_path: Path
) -> None:
    d = tmux_daemon
    with d.client() as c:
        run = c.create_run(
            "plan", {"goal": "seen from tmux", "workspace": str(tmp_path), "model": "demo"}
        )
    script = (
        f"cd {tmp_path}; stty -a > before.txt; "
        f"{sys.executable} -m kyros tui --daemon unix://{d.socket}; echo $? > exit.txt; "
        "stty -a > after.txt; echo CONSOLE-DONE; exec sleep 600"
    )
    tmux("new-session", "-d", "-s", "kyros", "-x", "140", "-y", "40", "sh", "-c", script)
    # The console starts and shows the runs (the one just queued among them).
    tmux.wait_for("connected", "Runs", run["id"], timeout=60)
    tmux("send-keys", "-t", "kyros", "C-t")  # a new terminal, focused
    tmux.wait_for("Terminals", "1 open")
    with d.client() as c:
        deadline = time.monotonic() + 30
        while not any(t["viewers"] for t in c.terminals()):  # type once it is attached
            assert time.monotonic() < deadline, "the terminal pane never attached"
            time.sleep(0.1)
    tmux("send-keys", "-t", "kyros", "-l", "echo tmux-$((6*7))")
    tmux("send-keys", "-t", "kyros", "Enter")
    screen = tmux.wait_for("tmux-42")
    assert "Traceback" not in screen
    tmux("send-keys", "-t", "kyros", "C-q")
    screen = tmux.wait_for("CONSOLE-DONE")
    assert "Traceback" not in screen
    assert (tmp_path / "exit.txt").read_text().strip() == "0"
    assert (tmp_path / "after.txt").read_text() == (tmp_path / "before.txt").read_text()
    with d.client() as c:  # the shell runs on in the daemon, no longer watched
        shells = [t for t in c.terminals() if t["cwd"] == str(tmp_path)]
        assert shells and all(t["status"] == "running" and t["viewers"] == 0 for t in shells)
        for t in shells:
            c.kill_terminal(t["id"])


def test_the_console_at_80x24_keeps_quit_help_and_the_runs_columns(
    tmux_daemon: Daemon, tmux: Tmux, tmp_path: Path
) -> None:
    d = tmux_daemon
    with d.client() as c:
        run = c.create_run(
            "plan", {"goal": "seen at 80 columns", "workspace": str(tmp_path), "model": "demo"}
        )
    script = (
        f"{sys.executable} -m kyros tui --daemon unix://{d.socket}; echo $? > {tmp_path}/exit.txt;"
        " echo CONSOLE-DONE; exec sleep 600"
    )
    tmux("new-session", "-d", "-s", "kyros", "-x", "80", "-y", "24", "sh", "-c", script)
    # The table settles its columns once it knows its width (a frame after the first).
    screen = tmux.wait_for("connected", run["id"], " GOAL ", timeout=60)
    lines = screen.splitlines()
    assert len(lines) <= 24 and all(len(line) <= 80 for line in lines)
    # The footer starts with the two keys a newcomer needs, before any are cut.
    assert lines[-1].lstrip().startswith("^q Quit  ? Help"), lines[-1]
    # The runs table keeps its five columns, in order, and the run's row shows each of them.
    header = next(line for line in lines if " ID " in line and "STATUS" in line)
    where = [header.index(f" {name} ") for name in ("ID", "STATUS", "KIND", "AGE", "GOAL")]
    assert where == sorted(where), header
    assert "AGENT" not in header and "COST" not in header  # these gave way
    row = next(line for line in lines if run["id"] in line)
    assert " plan " in row and "seen at 80 columns" in row
    assert row.index(run["id"]) < row.index("plan") < row.index("seen at 80 columns")
    assert "Agents" not in screen  # the side pane gave its width to the runs
    tmux("send-keys", "-t", "kyros", "C-q")
    after = tmux.wait_for("CONSOLE-DONE")
    # What the console printed as it quit is on the screen: the failure's own account.
    assert (tmp_path / "exit.txt").read_text().strip() == "0", after
