"""The console end to end: Textual's pilot drives `kyros tui`'s app against a real daemon on a
temporary socket (SQLite), with the scripted `demo` model and the fake OpenAI-compatible server.

One daemon serves the module (its start and first litellm import cost seconds); the restart
test restarts it last. Nothing inside kyros is mocked.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from textual.command import CommandPalette
from textual.pilot import Pilot
from textual.widget import Widget
from textual.widgets import Input, Select, Static, TabbedContent
from textual.widgets.data_table import ColumnKey

from kyros.errors import Conflict
from kyros.tui.app import KyrosApp, create_app
from kyros.tui.connection import Connection, open_connection
from kyros.tui.screens.new_run import NewRunScreen
from kyros.tui.screens.prompt import PromptScreen
from kyros.tui.widgets.connection_bar import ConnectionBar
from kyros.tui.widgets.run_events import RunEvents
from kyros.tui.widgets.runs_table import RunsTable
from tests.conftest import (
    FAST_QUEUE,
    Daemon,
    database,
    kyros_env,
    loaded_for,
    run_cli,
    start_daemon,
    xdg_dirs,
)
from tests.support.buggy_repo import FIX, call, make_repo
from tests.support.fake_openai import FakeOpenAI, Reply

pytestmark = pytest.mark.e2e

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "greeter"
SIZE = (150, 42)
VERDICT = {"score": 91, "verdict": "pass", "summary": "add is fixed", "findings": []}


@dataclass
class Box:
    """The module's daemon; the restart test replaces it."""

    daemon: Daemon


@pytest.fixture(scope="module")
def tui_daemon() -> Iterator[Box]:
    with xdg_dirs() as env, database("sqlite", env) as url:
        box = Box(start_daemon(kyros_env(env, KYROS_DATABASE_URL=url, **FAST_QUEUE)))
        try:
            yield box
        finally:
            box.daemon.stop()


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    dest = tmp_path / "greeter"
    shutil.copytree(EXAMPLE, dest)
    return dest


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


def cell(table: RunsTable, run_id: str, column: str) -> str | None:
    """What the runs table shows (not its data): None while the row is not there."""
    if run_id not in table.rows:
        return None
    return str(table.get_cell(run_id, column))


def ask_agent(d: Daemon, name: str) -> None:
    """An implement agent whose every write or command waits for a human."""
    spec = {
        "name": name,
        "role": "implement",
        "tools": ["read", "write", "command"],
        "approval_policy": "ask",
    }
    with d.client() as c, contextlib.suppress(Conflict):  # added by an earlier test
        c.add_agent(spec)


def errors_shown(app: KyrosApp) -> list[str]:
    return [n.message for n in app._notifications if n.severity == "error"]


def focused_id(app: KyrosApp) -> str | None:
    """The focused widget's id: a modal is ready for keys once its field has the focus."""
    return app.focused.id if app.focused is not None else None


def event_lines(detail: Widget) -> list[str]:
    """The detail pane's event log (empty until its tabs are built, a frame after it opens)."""
    return [line for events in detail.query(RunEvents) for line in events.lines]


def messages(app: KyrosApp) -> list[str]:
    """Every toast shown, as ``title: message`` when it has a title."""
    return [f"{n.title}: {n.message}" if n.title else n.message for n in app._notifications]


async def test_plan_run_from_the_palette_succeeds_and_shows_the_plan(
    tui_daemon: Box, workspace: Path
) -> None:
    app = console(tui_daemon.daemon, workspace)
    async with app.run_test(size=SIZE) as pilot:
        main = app.main
        await until(pilot, lambda: main.polls > 0, "the first poll")
        await pilot.press("ctrl+p")
        await until(pilot, lambda: isinstance(app.screen, CommandPalette), "the palette")
        await pilot.press(*"new plan")
        await pilot.pause(0.3)  # the palette searches in the background
        await pilot.press("enter")
        await until(pilot, lambda: focused_id(app) == "goal", "the new-run form")
        form = app.screen
        assert isinstance(form, NewRunScreen)
        assert form.query_one("#kind", Select).value == "plan"
        assert form.query_one("#workspace", Input).value == str(workspace)
        await pilot.press(*"add a flag")  # the goal field has the focus
        form.query_one("#model", Input).value = "demo"  # 60 ms a key: set the rest
        await pilot.press("ctrl+s")
        await until(pilot, lambda: app.screen is main, "the form to close")
        await until(pilot, lambda: main.detail.run_id is not None, "the new run in the detail")
        run_id = main.detail.run_id
        assert run_id is not None
        # The first demo run imports litellm in the daemon: seconds, not milliseconds.
        await until(
            pilot,
            lambda: cell(main.runs_table, run_id, "status") == "succeeded",
            "the run to succeed in the runs table",
            timeout=60,
        )
        assert cell(main.runs_table, run_id, "goal") == "add a flag"
        assert cell(main.runs_table, run_id, "kind") == "plan"
        detail = main.detail
        await until(
            pilot,
            lambda: (
                detail.run is not None
                and detail.run["status"] == "succeeded"
                and "## Steps" in "".join(getattr(m, "source", "") for m in detail.query("#output"))
            ),
            "the plan in the run detail",
        )
        assert detail.query_one(TabbedContent).active == "tab-output"
        events = detail.query_one(RunEvents)
        await until(pilot, lambda: "succeeded" in events.lines, "the final event in the log")
        assert events.seqs == list(range(1, len(events.seqs) + 1))  # every event, once
        assert "asking demo" in events.lines
        assert events.answers and '"summary"' in events.answers[0]  # the streamed tokens
        with tui_daemon.daemon.client() as c:
            run = c.run(run_id)
        assert (run["model"], run["goal"]) == ("demo", "add a flag")
        assert run["workspace"] == str(workspace)
        assert events.seqs[-1] == run["last_seq"]
        # `c` continues the finished run: a new plan run on the same conversation.
        await pilot.press("c")
        await until(pilot, lambda: focused_id(app) == "goal", "the continue form")
        form = app.screen
        assert isinstance(form, NewRunScreen)
        assert str(form.query_one("#form-title", Static).render()) == f"Continue run {run_id}"
        assert form.query_one("#kind", Select).value == "plan"
        await pilot.press(*"and a test")
        form.query_one("#model", Input).value = "demo"
        await pilot.press("ctrl+s")
        await until(pilot, lambda: main.detail.run_id not in (None, run_id), "the next run")
        next_id = main.detail.run_id
        assert next_id is not None
        await until(
            pilot,
            lambda: cell(main.runs_table, next_id, "status") == "succeeded",
            "the continued run to succeed",
        )
        with tui_daemon.daemon.client() as c:
            follow_up = c.run(next_id)
        assert follow_up["goal"] == "and a test"
        assert follow_up["thread_id"] == run["thread_id"]  # the same conversation
        assert not errors_shown(app)
        await pilot.press("ctrl+q")
    assert app.return_code == 0


async def test_the_new_run_form_checks_before_it_asks(tui_daemon: Box, tmp_path: Path) -> None:
    app = console(tui_daemon.daemon, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        main = app.main
        await until(pilot, lambda: main.polls > 0, "the first poll")
        before = len(main.runs_table.runs)
        await pilot.press("n")
        await until(pilot, lambda: focused_id(app) == "goal", "the form")
        form = app.screen
        assert isinstance(form, NewRunScreen)
        error = form.query_one("#form-error", Static)
        await pilot.press("ctrl+s")
        assert "goal is empty" in str(error.render())
        form.query_one("#goal", Input).value = "anything"
        form.query_one("#workspace", Input).value = str(tmp_path / "missing")
        await pilot.press("ctrl+s")
        assert "is not a directory" in str(error.render())
        # A critic reviews a run: the form asks for one.
        assert not form.query_one("#target", Input).display
        form.query_one("#kind", Select).value = "critic"
        await pilot.pause()
        assert form.query_one("#target", Input).display
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is main, "the form to close")
        await pilot.pause(0.5)
        assert len(main.runs_table.runs) == before  # nothing was started


async def test_approve_and_deny_from_the_approvals_pane(
    tui_daemon: Box, tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    d = tui_daemon.daemon
    repo = make_repo(tmp_path / "calc-repo")
    ask_agent(d, "careful")
    fake_openai.enqueue(
        Reply(tool_calls=[call("w1", "apply_patch", patch=FIX)]),
        Reply(tool_calls=[call("x1", "run_command", command="rm -rf /tmp/not-really")]),
        Reply(text="Patched; the command was refused so I stopped."),
    )
    body = {
        "goal": "fix add",
        "workspace": str(repo),
        "agent": "careful",
        "model": "openai/fake-coder",
        "api_base": fake_openai.url,
    }
    with d.client() as c:
        run_id = c.create_run("implement", body)["id"]
    app = console(d, repo)
    async with app.run_test(size=SIZE) as pilot:
        main = app.main
        approvals = main.approvals
        await until(pilot, lambda: run_id in approvals.waiting, "the run in the approvals pane", 60)
        assert str(approvals.get_cell(run_id, "waits")) == "apply_patch (write)"
        approvals.focus()
        await until(pilot, lambda: main.detail.run_id == run_id, "the waiting run in the detail")
        await until(
            pilot,
            lambda: (
                main.query_one("#pending", Static).display and main.query_one("#approve").display
            ),
            "the pending action and the approve button",
        )
        await pilot.press("a")
        await until(
            pilot,
            lambda: (
                (approvals.waiting.get(run_id) or {}).get("pending", {}).get("tool")
                == "run_command"
            ),
            "the run to wait on its command",
            timeout=60,
        )
        await pilot.press("d")
        await until(pilot, lambda: focused_id(app) == "prompt-input", "the reason prompt")
        assert isinstance(app.screen, PromptScreen)
        await pilot.press(*"no", "enter")
        await until(
            pilot,
            lambda: cell(main.runs_table, run_id, "status") == "succeeded",
            "the run to succeed",
            timeout=60,
        )
        await until(pilot, lambda: approvals.row_count == 0, "the approvals pane to empty")
        lines = main.detail.query_one(RunEvents).lines
        await until(pilot, lambda: "succeeded" in lines, "the end of the run in the log")
        assert "approved" in lines and "denied: no" in lines
        # `p` applies the selected run's change to the user's tree.
        assert main.detail.run_id == run_id
        await pilot.press("p")
        await until(
            pilot,
            lambda: "return a + b" in (repo / "calc" / "__init__.py").read_text(),
            "the change in the working tree",
        )
        # The toast follows the daemon's answer, which may come after the file changed.
        await until(
            pilot,
            lambda: any(m.startswith(f"applied run {run_id}") for m in messages(app)),
            "the applied toast",
        )
        # `k` asks a critic to review the run's change: the form names the run.
        asked = list(fake_openai.requests)  # the implement run's requests
        fake_openai.enqueue(Reply(text=json.dumps(VERDICT)))
        await pilot.press("k")
        await until(pilot, lambda: focused_id(app) == "goal", "the critic form")
        form = app.screen
        assert isinstance(form, NewRunScreen)
        assert form.query_one("#kind", Select).value == "critic"
        assert form.query_one("#target", Input).value == run_id
        await pilot.press("ctrl+s")
        await until(pilot, lambda: main.detail.run_id not in (None, run_id), "the critic run")
        critic_id = main.detail.run_id
        assert critic_id is not None
        await until(
            pilot,
            lambda: cell(main.runs_table, critic_id, "status") == "succeeded",
            "the critic run to succeed",
            timeout=60,
        )
        assert not errors_shown(app)
    with d.client() as c:
        review = c.run(critic_id)
    assert review["kind"] == "critic"
    assert review["output"]["assessment"]["score"] == VERDICT["score"]
    with d.client() as c:
        final = c.run(run_id)
    assert final["status"] == "succeeded"
    assert "+    return a + b" in final["output"]["diff"]
    told = [m for m in asked[-1].body["messages"] if m["role"] == "tool"]
    assert "denied" in told[-1]["content"] and "no" in told[-1]["content"]


def test_kyros_tui_quits_with_0_on_ctrl_q(tui_daemon: Box) -> None:
    """The real command in a real terminal (a pty): it draws, ctrl+q ends it with exit 0."""
    from ptyprocess import PtyProcess

    d = tui_daemon.daemon
    env = {**d.env, "TERM": "xterm-256color", "COLUMNS": "140", "LINES": "40"}
    proc = PtyProcess.spawn(
        [sys.executable, "-m", "kyros", "tui", "--daemon", f"unix://{d.socket}"],
        env=env,
        dimensions=(40, 140),
    )
    seen = b""
    try:
        deadline = time.monotonic() + 30
        while b"connected" not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([proc.fd], [], [], 0.2)
            if ready:
                try:
                    seen += os.read(proc.fd, 65536)
                except OSError:
                    break
        assert b"connected" in seen, seen[-2000:]
        proc.write(b"\x11")  # ctrl+q
        deadline = time.monotonic() + 15
        while proc.isalive() and time.monotonic() < deadline:
            ready, _, _ = select.select([proc.fd], [], [], 0.2)
            if ready:
                try:
                    seen += os.read(proc.fd, 65536)
                except OSError:
                    break
        proc.wait()
    finally:
        if proc.isalive():
            proc.terminate(force=True)
    assert proc.exitstatus == 0, seen[-2000:]
    assert b"Traceback" not in seen


def test_kyros_tui_says_plainly_when_no_daemon_answers(xdg: dict[str, str]) -> None:
    out = run_cli(kyros_env(xdg), "tui", "--daemon", f"unix://{xdg['XDG_RUNTIME_DIR']}/no.sock")
    assert out.returncode == 3, out.stderr
    assert "cannot reach the kyros daemon" in out.stderr
    assert "Traceback" not in out.stderr and out.stdout == ""


def test_tui_help_loads_no_textual() -> None:
    probe = (
        "import sys, json\nsys.argv=['kyros','tui','--help']\nfrom kyros.cli.main import app\n"
        "try:\n    app()\nexcept SystemExit:\n    pass\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'textual')))"
    )
    import subprocess

    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert "Open the console" in out.stdout
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


async def test_switch_daemon_from_the_palette(tui_daemon: Box, tmp_path: Path) -> None:
    """A daemon that does not answer is refused with a toast and the console stays where it
    was; a daemon that answers replaces the panes' contents."""
    d = tui_daemon.daemon
    connection = open_connection(loaded_for(d.env), f"unix://{d.socket}", None)
    here = connection.label
    app = create_app(connection, cwd=tmp_path, poll_seconds=0.3)
    try:
        async with app.run_test(size=SIZE) as pilot:
            main = app.main
            await until(pilot, lambda: main.polls > 0, "the first poll")
            known = len(main.runs_table.runs)

            async def switch_to(address: str, *, palette: bool) -> None:
                if palette:
                    await pilot.press("ctrl+p")
                    await until(pilot, lambda: isinstance(app.screen, CommandPalette), "palette")
                    await pilot.press(*"switch")
                    await pilot.pause(0.3)
                    await pilot.press("enter")
                else:
                    await main.run_action("switch_daemon")
                await until(pilot, lambda: focused_id(app) == "prompt-input", "the prompt")
                field = app.screen.query_one(Input)
                assert field.value == connection.label
                field.value = address
                await pilot.press("enter")

            await switch_to(f"unix://{tmp_path}/nobody.sock", palette=True)
            await until(
                pilot,
                lambda: any("could not switch to" in m for m in messages(app)),
                "the refusal",
            )
            assert connection.label == here and main.query_one(ConnectionBar).label == here
            polls = main.polls
            await switch_to(here, palette=False)
            await until(
                pilot, lambda: any("now talking to" in m for m in messages(app)), "the switch"
            )
            await until(
                pilot,
                lambda: main.polls > polls + 1 and len(main.runs_table.runs) == known,
                "the runs, read again",
            )
            assert not [m for m in messages(app) if "internal error" in m]
    finally:
        connection.dispose()


async def test_the_console_survives_a_daemon_restart(
    tui_daemon: Box, tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    """Stop and start the daemon under the console: the bar goes to reconnecting and back,
    the runs refresh, and the detail's events resume after the last one seen, no gap."""
    d = tui_daemon.daemon
    repo = make_repo(tmp_path / "calc-repo")
    ask_agent(d, "careful")
    fake_openai.enqueue(
        Reply(tool_calls=[call("w1", "apply_patch", patch=FIX)]),
        Reply(text="Patched."),
    )
    body = {
        "goal": "fix add across a restart",
        "workspace": str(repo),
        "agent": "careful",
        "model": "openai/fake-coder",
        "api_base": fake_openai.url,
    }
    with d.client() as c:
        run_id = c.create_run("implement", body)["id"]
    app = console(d, repo)
    async with app.run_test(size=SIZE) as pilot:
        main = app.main
        bar = main.query_one(ConnectionBar)
        await until(pilot, lambda: run_id in main.approvals.waiting, "the waiting run", 60)
        main.runs_table.select_run(run_id)
        await until(
            pilot,
            lambda: (
                main.detail.run_id == run_id
                and "waiting for approval: apply_patch (write)" in event_lines(main.detail)
            ),
            "the waiting run's events in the detail",
        )
        events = main.detail.query_one(RunEvents)  # built: it shows events
        seen_before = len(events.seqs)

        await asyncio.to_thread(d.stop)
        await until(pilot, lambda: bar.state == "reconnecting", "the bar to say reconnecting", 10)
        d = tui_daemon.daemon = await asyncio.to_thread(start_daemon, d.env)
        await until(pilot, lambda: bar.state == "connected", "the bar to say connected", 20)

        # The runs refresh: a run started after the restart shows up.
        with d.client() as c:
            later = c.create_run(
                "plan", {"goal": "after the restart", "workspace": str(repo), "model": "demo"}
            )["id"]
        await until(pilot, lambda: cell(main.runs_table, later, "status") is not None, "new run")
        # The detail still follows the waiting run: approve it from its button.
        await until(pilot, lambda: main.query_one("#approve").display, "the approve button")
        await pilot.click("#approve")
        await until(
            pilot,
            lambda: cell(main.runs_table, run_id, "status") == "succeeded",
            "the approved run to succeed",
            timeout=60,
        )
        await until(pilot, lambda: "succeeded" in events.lines, "the run's end in the detail")
        assert len(events.seqs) > seen_before
        assert events.seqs == list(range(1, len(events.seqs) + 1))  # no gap, no repeat
        assert "approved" in events.lines
        assert not errors_shown(app)
        assert app.is_running


def _dead_lettered_run(d: Daemon) -> str:
    """A run whose job's worker died twice while it ran alone, written to the daemon's store
    the way the reaper writes it (the poison itself is D3's test)."""
    from kyros.core.ids import new_id
    from kyros.core.store import jobs as jobs_repo
    from kyros.core.store import runs as runs_repo
    from kyros.core.store.engine import Store

    run_id = new_id("r")

    async def write() -> None:
        store = Store(d.env["KYROS_DATABASE_URL"])
        try:
            async with store.write() as conn:
                await runs_repo.insert_run(
                    conn, id=run_id, kind="plan", goal="poison", workspace="/tmp"
                )
                await jobs_repo.enqueue(conn, "no-such-kind", {}, run_id=run_id)
                await jobs_repo.claim(conn, "dead-node", 1, 0.01, postgres=False)
            await asyncio.sleep(0.05)
            async with store.write() as conn:
                [reaped] = await jobs_repo.reap(
                    conn, max_stalls=1, retry_base=0, retry_max=0, postgres=False
                )
                await runs_repo.set_fields(conn, run_id, status="failed", error=reaped.reason)
        finally:
            await store.close()

    asyncio.run(write())
    return run_id


def test_the_run_detail_shows_a_dead_lettered_runs_attempts(tui_daemon: Box) -> None:
    from textual.app import App, ComposeResult

    from kyros.tui.widgets.run_detail import RunDetail

    run_id = _dead_lettered_run(tui_daemon.daemon)

    class Host(App[None]):
        def compose(self) -> ComposeResult:
            yield RunDetail(Connection(tui_daemon.daemon.client(), "unix://test"), id="detail")

    async def drive() -> str:
        app = Host()
        async with app.run_test(size=SIZE) as pilot:
            detail = app.query_one(RunDetail)
            await until(pilot, lambda: bool(detail.query(RunEvents)), "the detail's tabs")
            detail.show_run(run_id)

            def shown() -> str:
                return "".join(getattr(m, "source", "") for m in detail.query("#output"))

            await until(pilot, lambda: "## Attempts" in shown(), "the attempts in the output")
            return shown()

    text = asyncio.run(drive())
    assert "**Run failed.**" in text and "dead-lettered" in text
    assert "| 1 | dead |" in text and "while it ran alone" in text


async def test_the_runs_table_updates_thousands_of_rows_in_place() -> None:
    """3,000 rows: a poll that changes one run's status touches that row only (the other
    rows are the same objects), keeps the cursor on its run, and takes milliseconds."""
    from datetime import UTC, datetime, timedelta

    from textual.app import App, ComposeResult

    now = datetime(2026, 3, 2, tzinfo=UTC)

    class Host(App[None]):
        def compose(self) -> ComposeResult:
            yield RunsTable(clock=lambda: now)

    runs = [
        {
            "id": f"r_{i:016d}",
            "status": "succeeded",
            "kind": "plan",
            "goal": f"goal {i} [b]not markup[/b]",
            "agent": "planner",
            "cost": 0.001,
            "created_at": (now - timedelta(seconds=37 * i)).isoformat(),
        }
        for i in range(3000)
    ]
    app = Host()
    async with app.run_test(size=SIZE) as pilot:
        table = app.query_one(RunsTable)
        table.update_runs(runs)
        await pilot.pause()
        assert table.row_count == 3000
        assert table.get_row_at(0)[0].plain == runs[0]["id"]  # newest first
        assert cell(table, runs[7]["id"], "goal") == "goal 7 [b]not markup[/b]"
        table.select_run(runs[10]["id"])
        rows_before = dict(table.rows)
        changed = [{**runs[3], "status": "failed"}, *runs[:3], *runs[4:]]
        started = time.perf_counter()
        table.update_runs(changed)
        took = time.perf_counter() - started
        await pilot.pause()
        assert cell(table, runs[3]["id"], "status") == "failed"
        assert all(table.rows[k] is row for k, row in rows_before.items())
        assert table.selected_run_id == runs[10]["id"]
        assert took < 0.5, f"{took:.3f}s to merge one change into 3,000 rows"
        # A filter that hides most rows, then shows them again.
        table.set_filter("FAILED plan")  # every word, any case, any column
        assert table.row_count == 1 and table.selected_run_id == runs[3]["id"]
        table.set_filter("")
        assert table.row_count == 3000


async def test_the_runs_table_rewrites_an_age_when_its_text_turns_over() -> None:
    """A poll that brings nothing new rewrites only the ages whose text changed (59s → 1m),
    and a changed cell keeps the table's row order: DataTable would rebuild it, and its line
    offsets, over every row at the next paint."""
    from datetime import UTC, datetime, timedelta

    from textual.app import App, ComposeResult

    start = datetime(2026, 3, 2, tzinfo=UTC)
    clock = [start]

    class Host(App[None]):
        def compose(self) -> ComposeResult:
            yield RunsTable(clock=lambda: clock[0])

    def run(n: int, ago: timedelta) -> dict[str, Any]:
        created = (start - ago).isoformat()
        return {"id": f"r_{n}", "status": "running", "kind": "plan", "created_at": created}

    runs = [run(1, timedelta(0)), run(2, timedelta(minutes=30)), run(3, timedelta(days=2))]
    app = Host()
    async with app.run_test(size=SIZE) as pilot:
        table = app.query_one(RunsTable)
        table.update_runs(runs)
        await pilot.pause()
        assert [cell(table, f"r_{n}", "age") for n in (1, 2, 3)] == ["0s", "30m", "2d"]
        offsets = table._y_offsets
        clock[0] = start + timedelta(seconds=59)
        table.update_runs(runs)  # the same copies: only the clock moved
        assert [cell(table, f"r_{n}", "age") for n in (1, 2, 3)] == ["59s", "30m", "2d"]
        clock[0] = start + timedelta(seconds=60)
        table.update_runs([{**runs[2], "status": "failed"}])
        assert [cell(table, f"r_{n}", "age") for n in (1, 2, 3)] == ["1m", "31m", "2d"]
        assert cell(table, "r_3", "status") == "failed"
        assert table._y_offsets is offsets
        await pilot.pause()
        # What is drawn, not only what is stored: the changed rows are redrawn, newest first.
        drawn = [table.render_line(y).text for y in (1, 2, 3)]
        assert ["r_1" in drawn[0], "1m" in drawn[0], "31m" in drawn[1]] == [True] * 3
        assert "r_3" in drawn[2] and "failed" in drawn[2] and "running" not in drawn[2]


async def test_the_runs_table_gives_way_to_its_five_columns_when_narrow() -> None:
    """Narrow, the agent and cost columns go (id, status, kind, age, goal stay); wide again,
    they come back in their places, with the cursor still on its run and cells still live."""
    from datetime import UTC, datetime, timedelta

    from textual.app import App, ComposeResult

    now = datetime(2026, 3, 2, tzinfo=UTC)

    class Host(App[None]):
        def compose(self) -> ComposeResult:
            yield RunsTable(clock=lambda: now)

    runs = [
        {
            "id": f"r_{i:016d}",
            "status": "running",
            "kind": "implement",
            "goal": f"goal {i}",
            "agent": "implementer",
            "cost": 0.25,
            "created_at": (now - timedelta(minutes=i)).isoformat(),
        }
        for i in range(40)
    ]
    everything = ["id", "status", "kind", "agent", "cost", "age", "goal"]
    app = Host()
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.query_one(RunsTable)
        table.update_runs(runs)
        await pilot.pause()
        assert [str(k.value) for k in table.columns] == ["id", "status", "kind", "age", "goal"]
        assert table.columns[ColumnKey("goal")].width >= 16
        drawn = table.render_line(1).text
        assert runs[0]["id"] in drawn and "implement" in drawn and "goal 0" in drawn
        assert "implementer" not in drawn and "$0.25" not in drawn
        table.select_run(runs[5]["id"])
        await pilot.resize_terminal(90, 24)  # room for the cost, not the agent (it goes first)
        await pilot.pause()
        assert [str(k.value) for k in table.columns] == [c for c in everything if c != "agent"]
        await pilot.resize_terminal(150, 24)
        await pilot.pause()
        assert [str(k.value) for k in table.columns] == everything
        assert table.selected_run_id == runs[5]["id"] and table.row_count == 40
        table.update_runs([{**runs[5], "status": "failed", "agent": "careful"}])
        assert cell(table, runs[5]["id"], "agent") == "careful"
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        table.update_runs([{**runs[5], "status": "succeeded", "agent": "x"}])  # agent hidden
        assert cell(table, runs[5]["id"], "status") == "succeeded"


async def test_the_run_detail_built_while_the_console_closes_raises_nothing(
    tui_daemon: Box,
) -> None:
    """The detail's actions and tabs are built from the screen's queue a frame late; when the
    console quits first, that build runs while the detail is being taken down (it mounts
    nothing) and must end quietly, not in a traceback over the user's terminal."""
    from textual.app import App, ComposeResult

    from kyros.tui.widgets.run_detail import RunDetail

    class Host(App[None]):
        def compose(self) -> ComposeResult:
            yield RunDetail(Connection(tui_daemon.daemon.client(), "unix://test"), id="detail")

    app = Host()
    async with app.run_test() as pilot:
        detail = app.query_one(RunDetail)
        await until(pilot, lambda: bool(detail.query(RunEvents)), "the detail's tabs")
        late = RunDetail(Connection(tui_daemon.daemon.client(), "unix://test"), id="late")
        await app.mount(late)
        removing = late.remove()  # as on quitting: pruned, and a mount into it does nothing
        late.show_run("r_test")
        event = {"seq": 1, "type": "run.started", "data": {}, "ts": "2026-01-01T00:00:00Z"}
        late.on_run_detail_events_arrived(RunDetail.EventsArrived("r_test", [event]))
        await late._build()  # the delayed build, reaching it now
        await removing
        assert not late.query(RunEvents)
