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


@pytest.fixture(scope="module")
def made(daemon: Daemon, workspace: Path) -> dict[str, Any]:
    """Escapes everywhere: runs followed to the end, an agent, a terminal; their ids and
    what following the runs printed."""
    w = str(workspace)
    # A goal with escapes, followed to the end (progress and result), demo model: the plan
    # it writes names the goal and the files of the workspace (one of which holds escapes).
    # The first run imports litellm in the daemon: seconds, a minute on a loaded machine.
    demo = daemon.cli("run", "plan", f"goal {EVIL}", "-w", w, "--model", "demo", timeout=240)
    assert demo.returncode == 0, demo.stderr
    runs = json.loads(daemon.cli("runs", "list", "--json").stdout)["runs"]
    assert EVIL in runs[0]["goal"]  # stored as given: sanitised where shown, not where kept
    # A model's answer with escapes (the fake OpenAI-compatible server).
    with FakeOpenAI() as fake:
        fake.enqueue(Reply(text=plan_with_escapes()))
        model = daemon.cli(
            *("run", "plan", "plain goal", "-w", w, "--model", "openai/fake"),
            *("--api-base", fake.url),
            timeout=240,
        )
    assert model.returncode == 0, model.stderr
    model_id = json.loads(daemon.cli("runs", "list", "--json").stdout)["runs"][0]["id"]
    # An agent whose prompt holds escapes; a terminal whose command line holds them.
    added = daemon.cli("agents", "add", "evil", "--role", "plan", "--prompt", f"p {EVIL}")
    assert added.returncode == 0, added.stderr
    term = daemon.cli("term", "new", "--name", "evil", "--", "printf", f"%s {EVIL}\\n", "x")
    assert term.returncode == 0, term.stderr
    return {
        "demo": runs[0]["id"],
        "model": model_id,
        "followed": {"demo": demo.stdout + demo.stderr, "model": model.stdout + model.stderr},
    }


def test_following_a_run_prints_no_escape(made: dict[str, Any]) -> None:
    demo, model = made["followed"]["demo"], made["followed"]["model"]
    assert "Title!" in demo and "A summary Title!" in model
    assert clean(demo) and clean(model), (demo, model)


#: (what, command line, what the output must show); RUN is a run's id.
COMMANDS = [
    ("runs list", ["runs", "list"], "Title!"),
    ("runs list --plain", ["runs", "list", "--plain"], "Title!"),
    ("runs list --json", ["runs", "list", "--json"], "goal"),
    ("runs show demo", ["runs", "show", "demo"], "Title!"),
    ("runs show model", ["runs", "show", "model"], "A summary Title!"),
    ("runs show --json", ["runs", "show", "model", "--json"], "summary"),
    ("runs events demo", ["runs", "events", "demo", "--no-follow"], "succeeded"),
    ("runs events model", ["runs", "events", "model", "--no-follow"], "succeeded"),
    ("runs events --jsonl", ["runs", "events", "model", "--no-follow", "--jsonl"], "seq"),
    ("agents list", ["agents", "list"], "evil"),
    ("agents show", ["agents", "show", "evil"], "p Title!"),
    ("term ls", ["term", "ls"], "printf"),
    ("threads ls", ["threads", "ls"], "Title!"),
    ("usage --by run", ["usage", "--by", "run"], "total"),
    ("term logs", ["term", "logs", "evil"], ""),
    ("an error", ["runs", "show", f"r_{EVIL}"], "not a run id"),
    ("detach", ["run", "plan", f"again {EVIL}", "-w", ".", "--model", "demo", "--detach"], "r_"),
]


@pytest.mark.parametrize(("what", "args", "shows"), COMMANDS, ids=[c[0] for c in COMMANDS])
def test_no_command_prints_an_escape(
    daemon: Daemon, made: dict[str, Any], what: str, args: list[str], shows: str
) -> None:
    args = [made.get(a, a) if isinstance(made.get(a), str) else a for a in args]
    out = daemon.cli(*args)
    text = out.stdout + out.stderr
    assert shows in text, (what, text)
    assert clean(text), (what, text)
    if what == "runs show demo":
        assert "notes" in out.stdout  # the file name, cleaned, is there


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
