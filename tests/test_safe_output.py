"""Terminal escapes in what users, models, files and processes wrote never reach the terminal
(RELIABILITY S13): from any command that prints them, and from the console's widgets.

The escapes: an OSC title (``ESC ] 0 ; … BEL``), OSC 52 (the clipboard), CSI colours, a screen
clear and a bare ESC, each in a goal, an agent's prompt, a model's answer (the fake
OpenAI-compatible server), a file name, and a terminal's command line.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kyros.sanitize import clean_text, one_line
from tests.conftest import FAST_QUEUE, REPO, Daemon, database, kyros_env, start_daemon, xdg_dirs
from tests.support.fake_openai import FakeOpenAI, Reply

pytestmark = pytest.mark.e2e

EVIL = "T\x1b]0;pwned\x07i\x1b]52;c;aGVsbG8=\x07t\x1b[31mle\x1b[0m\x1b[2J\x1bX\x9b1m!"
#: Bytes that must never reach a terminal from text kyros did not write itself.
BAD = ("\x1b", "\x07", "\x9b", "\x9d")


def clean(text: str) -> bool:
    return not any(b in text for b in BAD)


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    with xdg_dirs() as env, database("sqlite", env) as url:
        d = start_daemon(kyros_env(env, KYROS_DATABASE_URL=url, **FAST_QUEUE))
        try:
            yield d
        finally:
            d.stop()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example project with a file whose name holds escapes."""
    dest = tmp_path_factory.mktemp("ws") / "greeter"
    shutil.copytree(REPO / "examples" / "greeter", dest)
    (dest / f"notes{EVIL}.py").write_text("x = 1\n")
    return dest


def plan_with_escapes() -> str:
    return json.dumps(
        {
            "summary": f"A summary {EVIL}",
            "steps": [
                {"title": f"Step {EVIL}", "detail": f"detail {EVIL}", "files": [f"a{EVIL}.py"]}
            ],
            "risks": [f"risk {EVIL}"],
            "tests": [f"test {EVIL}"],
        }
    )


def test_sanitiser_removes_every_escape() -> None:
    assert clean(clean_text(EVIL)) and clean_text(EVIL) == "Title!"
    assert one_line(f"a\tb\nc{EVIL}") == "a b cTitle!"


def test_no_command_prints_an_escape(
    daemon: Daemon, workspace: Path, fake_openai: FakeOpenAI
) -> None:
    outputs: dict[str, str] = {}

    def cli(name: str, *args: str, ok: bool = True) -> Any:
        out = daemon.cli(*args)
        assert not ok or out.returncode == 0, (name, out.stderr)
        outputs[name] = out.stdout + out.stderr
        return out

    w = str(workspace)
    # A goal with escapes, followed to the end (progress and result), demo model: the plan
    # it writes names the goal and the files of the workspace (one of which holds escapes).
    demo = cli("follow demo", "run", "plan", f"goal {EVIL}", "-w", w, "--model", "demo")
    assert "Title!" in demo.stdout + demo.stderr
    runs = json.loads(daemon.cli("runs", "list", "--json").stdout)["runs"]
    demo_id = runs[0]["id"]
    assert EVIL in runs[0]["goal"]  # stored as given: sanitised where shown, not where kept
    # A model's answer with escapes (the fake OpenAI-compatible server).
    fake_openai.enqueue(Reply(text=plan_with_escapes()))
    model = cli(
        "follow model",
        *("run", "plan", "plain goal", "-w", w, "--model", "openai/fake"),
        *("--api-base", fake_openai.url),
    )
    assert "A summary Title!" in model.stdout
    model_id = json.loads(daemon.cli("runs", "list", "--json").stdout)["runs"][0]["id"]
    # An agent whose prompt holds escapes.
    cli("agents add", "agents", "add", "evil", "--role", "plan", "--prompt", f"p {EVIL}")
    # A terminal whose command line holds escapes.
    cli("term new", "term", "new", "--name", "evil", "--", "printf", f"%s {EVIL}\\n", "x")
    time.sleep(0.5)  # the program prints and exits

    cli("runs list", "runs", "list")
    cli("runs list --plain", "runs", "list", "--plain")
    for run_id in (demo_id, model_id):
        shown = cli(f"runs show {run_id}", "runs", "show", run_id)
        assert "Title!" in shown.stdout
        cli(f"runs events {run_id}", "runs", "events", run_id, "--no-follow")
        cli(f"runs show {run_id} --json", "runs", "show", run_id, "--json")
        cli(f"runs events {run_id} --jsonl", "runs", "events", run_id, "--no-follow", "--jsonl")
    cli("runs list --json", "runs", "list", "--json")
    cli("agents list", "agents", "list")
    shown = cli("agents show", "agents", "show", "evil")
    assert "p Title!" in shown.stdout
    listed = cli("term ls", "term", "ls")
    assert "printf" in listed.stdout
    cli("term logs", "term", "logs", "evil")
    # An error quoting a value the user typed.
    cli("error", "runs", "show", f"r_{EVIL}", ok=False)
    cli("detach", "run", "plan", f"again {EVIL}", "-w", w, "--model", "demo", "--detach")
    for name, text in outputs.items():
        assert clean(text), (name, text)
    assert "notes" in outputs[f"runs show {demo_id}"]  # the file name, cleaned, is there


async def test_the_console_shows_no_escape(daemon: Daemon, workspace: Path) -> None:
    from kyros.tui.app import create_app
    from kyros.tui.connection import Connection
    from kyros.tui.widgets.run_events import RunEvents

    with daemon.client() as c:
        run = c.create_run(
            "plan", {"goal": f"console {EVIL}", "workspace": str(workspace), "model": "demo"}
        )
        deadline = time.monotonic() + 60
        while c.run(run["id"])["status"] != "succeeded":
            assert time.monotonic() < deadline, "the demo run did not finish"
            time.sleep(0.1)
    app = create_app(
        Connection(daemon.client(), f"unix://{daemon.socket}"), cwd=workspace, poll_seconds=0.3
    )
    async with app.run_test(size=(150, 42)) as pilot:
        main = app.main
        deadline = time.monotonic() + 30
        while run["id"] not in main.runs_table.rows:
            assert time.monotonic() < deadline, "the run never reached the runs table"
            await pilot.pause(0.05)
        main.detail.show_run(run["id"])
        detail = main.detail

        def ready() -> bool:
            events = list(detail.query(RunEvents))
            sources = "".join(getattr(m, "source", "") for m in detail.query("#output"))
            return bool(events and "succeeded" in events[0].lines and "Steps" in sources)

        while not ready():
            assert time.monotonic() < deadline, "the run detail never filled in"
            await pilot.pause(0.05)
        goal = str(main.runs_table.get_cell(run["id"], "goal"))
        assert goal.startswith("console Title!") and clean(goal)
        head = str(detail.query_one("#detail-head").render())
        assert "console Title!" in head and clean(head)
        events = detail.query_one(RunEvents)
        assert all(clean(line) for line in events.lines)
        assert all(clean(answer) for answer in events.answers)
        sources = "".join(getattr(m, "source", "") for m in detail.query("#output"))
        assert "Title!" in sources and clean(sources)
        agents = [str(cell) for row in main.query("AgentsList") for cell in _cells(row)]
        assert all(clean(text) for text in agents)
        screen = app.export_screenshot()
        assert "&#27;" not in screen and "\x1b" not in screen and "\x07" not in screen
        await pilot.press("ctrl+q")


def _cells(table: Any) -> list[Any]:
    return [table.get_cell_at((r, c)) for r in range(table.row_count) for c in range(3)]
