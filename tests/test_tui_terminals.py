"""The console's terminals end to end: Textual's pilot drives the app against a real daemon on a
temporary socket; the terminals are real ptys in the daemon, the attach a real WebSocket.

A new tab runs a shell that echoes what is typed; the attach picker, close (detach) and kill act
on the daemon's sessions; a run's own terminal is one key away from the runs table; a
full-screen program gets application cursor keys and bracketed paste; a program asking where its
cursor is gets the answer, but not for a query replayed from the scrollback. Nothing in kyros is
mocked.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from textual import events
from textual.pilot import Pilot
from textual.widgets import OptionList, Tabs

from kyros.settings import detach_key_byte
from kyros.tui.app import KyrosApp, create_app
from kyros.tui.connection import Connection
from kyros.tui.screens.confirm import ConfirmScreen
from kyros.tui.screens.terminal_picker import TerminalPicker
from kyros.tui.screens.terminals import TerminalsScreen
from kyros.tui.terminal_keys import key_name
from kyros.tui.widgets.terminal_view import TerminalView
from tests.conftest import FAST_QUEUE, Daemon, database, kyros_env, start_daemon, xdg_dirs
from tests.support.buggy_repo import call, make_repo
from tests.support.fake_openai import FakeOpenAI, Reply

pytestmark = pytest.mark.e2e

SIZE = (120, 36)


@pytest.fixture(scope="module")
def term_daemon() -> Iterator[Daemon]:
    with xdg_dirs() as env, database("sqlite", env) as url:
        d = start_daemon(kyros_env(env, KYROS_DATABASE_URL=url, SHELL="/bin/sh", **FAST_QUEUE))
        try:
            yield d
        finally:
            d.stop()


def console(d: Daemon, cwd: Path) -> KyrosApp:
    return create_app(Connection(d.client(), f"unix://{d.socket}"), cwd=cwd, poll_seconds=0.3)


async def until(
    pilot: Pilot[Any], check: Callable[[], bool], what: str, timeout: float = 30.0
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def terminals_screen(app: KyrosApp) -> TerminalsScreen | None:
    """The terminals screen, once it is on top and mounted."""
    screen = app.screen
    return screen if isinstance(screen, TerminalsScreen) and screen.is_mounted else None


def attached_view(app: KyrosApp) -> TerminalView | None:
    """The active tab's terminal once its WebSocket is open."""
    screen = terminals_screen(app)
    view = screen.active_view if screen is not None else None
    return view if view is not None and view.attached else None


async def open_in_pane(
    app: KyrosApp, pilot: Pilot[Any], term: dict[str, Any]
) -> tuple[TerminalsScreen, TerminalView]:
    """Open the terminals screen and ``term`` in a tab of it, once the WebSocket is open."""
    await until(pilot, lambda: app.main.polls > 0, "the first poll")
    app.main.action_terminals()
    await until(pilot, lambda: terminals_screen(app) is not None, "the terminals screen")
    screen = terminals_screen(app)
    assert screen is not None
    await screen.open_terminal(term)
    await until(pilot, lambda: attached_view(app) is not None, "the attach")
    view = attached_view(app)
    assert view is not None
    return screen, view


def listed(d: Daemon, terminal_id: str) -> dict[str, Any]:
    with d.client() as c:
        return c.terminal(terminal_id)


def errors_shown(app: KyrosApp) -> list[str]:
    return [n.message for n in app._notifications if n.severity == "error"]


async def test_type_echo_hi_in_a_new_terminal_tab_and_read_hi_back(
    term_daemon: Daemon, tmp_path: Path
) -> None:
    app = console(term_daemon, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.main.polls > 0, "the first poll")
        await pilot.press("ctrl+t")  # from the runs: a new terminal, focused
        await until(pilot, lambda: attached_view(app) is not None, "the new terminal attached")
        view = attached_view(app)
        assert view is not None and app.focused is view
        await until(pilot, lambda: any(view.screen_text()), "the shell's prompt")
        await pilot.press(*"echo hi", "enter")
        await until(pilot, lambda: "hi" in view.screen_text(), "`hi` on the terminal's screen")
        assert any(line.endswith("echo hi") for line in view.screen_text())
        # The daemon's session: a shell in the console's directory, sized to the pane, watched.
        term = listed(term_daemon, view.terminal_id)
        assert term["status"] == "running" and term["viewers"] == 1
        assert term["cwd"] == str(tmp_path)
        assert (term["rows"], term["cols"]) == (view.size.height, view.size.width)
        # ctrl+\ gives the focus back to the tab bar; w closes the tab and detaches.
        await pilot.press("ctrl+backslash")
        await until(pilot, lambda: isinstance(app.focused, Tabs), "the focus on the tab bar")
        await pilot.press("w")
        screen = terminals_screen(app)
        assert screen is not None
        await until(pilot, lambda: not screen.views, "the tab to close")
        await until(
            pilot, lambda: listed(term_daemon, view.terminal_id)["viewers"] == 0, "the detach"
        )
        assert listed(term_daemon, view.terminal_id)["status"] == "running"  # it runs on
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is app.main, "the runs again")
        assert not errors_shown(app)
    with term_daemon.client() as c:
        c.kill_terminal(view.terminal_id)


async def test_attach_from_the_list_then_kill(term_daemon: Daemon, tmp_path: Path) -> None:
    with term_daemon.client() as c:
        term = c.create_terminal({"name": "picked", "cwd": str(tmp_path), "command": ["/bin/cat"]})
    app = console(term_daemon, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.main.polls > 0, "the first poll")
        await pilot.press("t")
        await until(pilot, lambda: terminals_screen(app) is not None, "the terminals screen")
        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, TerminalPicker), "the picker")
        options = app.screen.query_one(OptionList)
        index = next(
            i
            for i in range(options.option_count)
            if options.get_option_at_index(i).id == term["id"]
        )
        options.highlighted = index
        await pilot.press("enter")
        await until(pilot, lambda: attached_view(app) is not None, "the picked terminal")
        view = attached_view(app)
        assert view is not None and view.terminal_id == term["id"] and view.label == "picked"
        await pilot.press(*"meow", "enter")  # cat echoes the line, then prints it
        await until(pilot, lambda: view.screen_text()[:2] == ["meow", "meow"], "cat's echo")
        # Attaching again from the list shows the same tab, not a second one.
        await pilot.press("ctrl+backslash", "a")
        await until(pilot, lambda: isinstance(app.screen, TerminalPicker), "the picker again")
        await pilot.press("escape")
        screen = terminals_screen(app)
        assert screen is not None and len(screen.views) == 1
        await pilot.press("k")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the kill question")
        await pilot.press("y")
        await until(
            pilot, lambda: listed(term_daemon, term["id"])["status"] == "exited", "the kill"
        )
        await until(pilot, lambda: not screen.views, "the killed terminal's tab to close")
        assert not errors_shown(app)


async def test_the_selected_runs_terminal_is_one_key_away(
    term_daemon: Daemon, tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    """An implement run's command (`cat`, allowed for the built-in implementer) runs in a
    daemon terminal; `o` on the run opens it, and what is typed there reaches the command."""
    repo = make_repo(tmp_path / "calc-repo")
    fake_openai.enqueue(
        Reply(tool_calls=[call("x1", "run_command", command="cat")]),
        Reply(text="The command read what you typed."),
    )
    body = {
        "goal": "read from the terminal",
        "workspace": str(repo),
        "model": "openai/fake-coder",
        "api_base": fake_openai.url,
    }
    with term_daemon.client() as c:
        run_id = c.create_run("implement", body)["id"]

    def run_terminal() -> dict[str, Any] | None:
        with term_daemon.client() as c:
            mine = [t for t in c.terminals() if t["run_id"] == run_id]
        return mine[0] if mine else None

    app = console(term_daemon, repo)
    async with app.run_test(size=SIZE) as pilot:
        main = app.main
        await until(pilot, lambda: run_id in main.runs_table.rows, "the run in the table")
        await until(pilot, lambda: run_terminal() is not None, "the run's terminal", 60)
        main.runs_table.select_run(run_id)
        await until(pilot, lambda: main.detail.run_id == run_id, "the run selected")
        await pilot.press("o")
        await until(pilot, lambda: attached_view(app) is not None, "the run's terminal shown")
        view = attached_view(app)
        terminal = run_terminal()
        assert view is not None and terminal is not None
        assert view.terminal_id == terminal["id"]
        await pilot.press(*"typed by a human", "enter")
        await until(
            pilot,
            lambda: view.screen_text()[:2] == ["typed by a human"] * 2,
            "cat's echo in the run's terminal",
        )
        await pilot.press("ctrl+d")  # end of input: cat ends, the run goes on
        await until(pilot, lambda: view.exited is not None, "the command to exit")
        assert view.exited == {"code": 0, "signal": None}
        assert "[exited 0]" in view.screen_text()
        await until(
            pilot,
            lambda: (main.runs_table.runs.get(run_id) or {}).get("status") == "succeeded",
            "the run to succeed",
            60,
        )
        screen = terminals_screen(app)
        assert screen is not None and screen.tabs.get_tab(f"tab-{terminal['id']}")
        assert "[exited 0]" in str(screen.tabs.get_tab(f"tab-{terminal['id']}").label)
        assert not errors_shown(app)
    told = [m for m in fake_openai.requests[1].body["messages"] if m["role"] == "tool"]
    assert "typed by a human" in told[-1]["content"]


KEYS_PROGRAM = r"""
import os, sys, termios, tty
fd = sys.stdin.fileno()
tty.setraw(fd)
# Alternate screen, application cursor keys, bracketed paste: what vim and htop ask for.
os.write(1, b"\x1b[?1049h\x1b[?1h\x1b[?2004h\x1b[Hready\r\n")
got = b""
while not got.endswith(b"q"):
    got += os.read(fd, 1024)
    os.write(1, repr(got).encode() + b"\r\n")
os.read(fd, 1)  # any key leaves
os.write(1, b"\x1b[?1049l")
"""


async def test_a_full_screen_program_gets_its_keys(term_daemon: Daemon, tmp_path: Path) -> None:
    script = tmp_path / "keys.py"
    script.write_text(KEYS_PROGRAM)
    with term_daemon.client() as c:
        term = c.create_terminal(
            {"name": "keys", "cwd": str(tmp_path), "command": [sys.executable, str(script)]}
        )
    app = console(term_daemon, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        _, view = await open_in_pane(app, pilot, term)
        await until(pilot, lambda: view.screen_text()[0] == "ready", "the program's screen")
        assert view.emulator.in_alternate_screen and view.emulator.application_cursor_keys
        await pilot.press("up", "ctrl+p", "tab", "escape")
        app.post_message(events.Paste("a\nb"))
        await pilot.press("q")
        want = repr(b"\x1bOA\x10\t\x1b\x1b[200~a\rb\x1b[201~q")
        await until(
            pilot, lambda: want in "".join(view.screen_text()), "every key, as the program sees"
        )
        await pilot.press("x")
        await until(pilot, lambda: view.exited is not None, "the program to end")
        assert not view.emulator.in_alternate_screen
        assert json.dumps(view.exited) == '{"code": 0, "signal": null}'
        assert not errors_shown(app)


async def test_the_leave_key_is_the_detach_key_setting(term_daemon: Daemon, tmp_path: Path) -> None:
    """With ``detach_key = "ctrl-b"`` ctrl+b leaves the terminal, and ctrl+\\ is the
    program's: ``cat`` on a pty in cooked mode ends on it (SIGQUIT)."""
    with term_daemon.client() as c:
        term = c.create_terminal({"cwd": str(tmp_path), "command": ["/bin/cat"]})
    app = create_app(
        Connection(term_daemon.client(), f"unix://{term_daemon.socket}"),
        cwd=tmp_path,
        poll_seconds=0.3,
        leave_key=key_name(detach_key_byte("ctrl-b")),
    )
    async with app.run_test(size=SIZE) as pilot:
        screen, view = await open_in_pane(app, pilot, term)
        assert "^b leaves a terminal" in str(screen.query_one("#terms-head").render())
        await pilot.press("ctrl+b")
        await until(pilot, lambda: isinstance(app.focused, Tabs), "the focus on the tab bar")
        await pilot.press("enter")
        await until(pilot, lambda: app.focused is view, "the focus back in the terminal")
        await pilot.press("ctrl+backslash")
        await until(pilot, lambda: view.exited is not None, "cat to end on SIGQUIT")
        assert view.exited == {"code": None, "signal": 3}
        assert "[exited: signal 3]" in view.screen_text()


SCREEN_PROGRAM = r"""
import os, sys, time
# A full-screen program's first draw: every cell addressed and coloured on its own (~30 KB,
# no newline), then a word on the last row.
cells = b"".join(
    b"\x1b[%d;%dH\x1b[3%dm#" % (y, x, (x + y) % 7 + 1) for y in range(1, 24) for x in range(1, 81)
)
os.write(1, b"\x1b[?1049h\x1b[2J" + cells + b"\x1b[0m\x1b[24;1Hdrawn")
time.sleep(600)
"""


async def test_attaching_to_a_full_screen_program_shows_its_whole_screen(
    term_daemon: Daemon, tmp_path: Path
) -> None:
    """The attach's scrollback is drawn whole, however large the program's last redraw: a
    screen cut to its last few KiB would leave most rows blank until the program redraws."""
    script = tmp_path / "screen.py"
    script.write_text(SCREEN_PROGRAM)
    with term_daemon.client() as c:
        term = c.create_terminal(
            {
                "name": "screen",
                "cwd": str(tmp_path),
                "command": [sys.executable, str(script)],
                "rows": 24,
                "cols": 80,
            }
        )
        deadline = time.monotonic() + 30
        while "drawn" not in c.terminal_logs(term["id"]):
            assert time.monotonic() < deadline, "the program never drew its screen"
            time.sleep(0.05)
    app = console(term_daemon, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        _, view = await open_in_pane(app, pilot, term)
        await until(pilot, lambda: "drawn" in view.screen_text(), "the program's last row")
        rows = view.screen_text()
        assert rows[:23] == ["#" * 80] * 23, rows[:3]
        assert view.emulator.in_alternate_screen
    with term_daemon.client() as c:
        c.kill_terminal(term["id"])


QUERY_PROGRAM = r"""
import os, select, sys, tty
fd = sys.stdin.fileno()
tty.setraw(fd)

def answer(end):
    # What the terminal typed back, up to ``end``; 10 s without it and the terminal never answered.
    got = b""
    while not got.endswith(end):
        if not select.select([fd], [], [], 10)[0]:
            return got + b" (no answer)"
        got += os.read(fd, 64)
    return got

os.write(1, b"\x1b[2J\x1b[Hready\r\n")
os.read(fd, 1)  # a key: the console is attached and the output is live
os.write(1, b"\x1b[5;12H\x1b[6n")
cpr = answer(b"R")
os.write(1, b"\x1b[c")
da = answer(b"c")
os.write(1, b"\x1b[8;1H" + b"cpr=" + repr(cpr).encode() + b" da=" + repr(da).encode() + b"\r\n")
os.read(fd, 1)
"""


async def test_a_program_asking_for_the_cursor_position_gets_it(
    term_daemon: Daemon, tmp_path: Path
) -> None:
    """A program that writes ``CSI 6 n`` and waits for the answer in raw mode (as readline,
    fish and prompt toolkits do) reads where its cursor is; ``CSI c`` gets primary device
    attributes."""
    script = tmp_path / "query.py"
    script.write_text(QUERY_PROGRAM)
    with term_daemon.client() as c:
        term = c.create_terminal(
            {"name": "query", "cwd": str(tmp_path), "command": [sys.executable, str(script)]}
        )
    app = console(term_daemon, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        _, view = await open_in_pane(app, pilot, term)
        await until(pilot, lambda: view.screen_text()[0] == "ready", "the program's prompt")
        await pilot.press("g")
        await until(pilot, lambda: view.screen_text()[7].startswith("cpr="), "the answers")
        assert view.screen_text()[7] == r"cpr=b'\x1b[5;12R' da=b'\x1b[?62;22c'"
        await pilot.press("x")
        await until(pilot, lambda: view.exited is not None, "the program to end")
        assert view.exited == {"code": 0, "signal": None}
        assert not errors_shown(app)


STALE_QUERY_PROGRAM = r"""
import os, select, sys, tty
fd = sys.stdin.fileno()
tty.setraw(fd)
os.write(1, b"\x1b[6nasked\r\n")  # before any viewer: nobody answers
while True:
    got = os.read(fd, 64)
    os.write(1, b"got " + repr(got).encode() + b"\r\n")
    if got == b"z":  # now ask while the console watches
        os.write(1, b"\x1b[6n")
        if select.select([fd], [], [], 10)[0]:
            os.write(1, b"then " + repr(os.read(fd, 64)).encode() + b"\r\n")
"""


async def test_a_query_in_the_replayed_scrollback_is_not_answered(
    term_daemon: Daemon, tmp_path: Path
) -> None:
    """The attach replays the scrollback; the query in it was made before the console came and
    its answer now would be typed into whatever the program reads next. A query the program
    makes while the console watches is answered."""
    script = tmp_path / "stale.py"
    script.write_text(STALE_QUERY_PROGRAM)
    with term_daemon.client() as c:
        term = c.create_terminal(
            {"name": "stale", "cwd": str(tmp_path), "command": [sys.executable, str(script)]}
        )
        deadline = time.monotonic() + 30
        while "asked" not in c.terminal_logs(term["id"]):
            assert time.monotonic() < deadline, "the program never asked"
            time.sleep(0.05)
    app = console(term_daemon, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        _, view = await open_in_pane(app, pilot, term)
        await until(pilot, lambda: "asked" in view.screen_text(), "the replayed query")
        await pilot.pause(0.5)  # time for a wrong answer to reach the program
        await pilot.press("z")
        await until(
            pilot,
            lambda: any(line.startswith("then") for line in view.screen_text()),
            "the live answer",
        )
        assert view.screen_text()[:3] == ["asked", "got b'z'", r"then b'\x1b[3;1R'"]
        assert not errors_shown(app)
    with term_daemon.client() as c:
        c.kill_terminal(term["id"])
