"""Snapshots of the console: the main screen, a run's detail (result and diff), the new-run
form, the help screen and the terminals screen.

Real daemons give random ids and times, so these screens are fed by an in-memory client with
fixed runs, events and agents behind the real :class:`~kyros.tui.connection.Connection` (the
seam the app factory takes), and a frozen clock. Everything else is the real console.
`tests/test_tui.py` drives the same console against a real daemon. The terminals screen is the
exception: its tab shows a real daemon terminal whose program prints fixed text and sleeps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input, TabbedContent

from kyros.errors import NotFound
from kyros.tui.app import KyrosApp, create_app
from kyros.tui.connection import Connection
from kyros.tui.screens.terminals import TerminalsScreen
from kyros.tui.widgets.run_events import RunEvents
from kyros.tui.widgets.terminal_view import TerminalView
from tests.conftest import Daemon, database, kyros_env, start_daemon, xdg_dirs

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
SIZE = (150, 42)
LABEL = "unix:///run/user/1000/kyros/kyros.sock"

PATCH = """\
--- a/greeter/__main__.py
+++ b/greeter/__main__.py
@@ -1,9 +1,12 @@
 import argparse

 from greeter import greet


 def main() -> None:
     parser = argparse.ArgumentParser()
     parser.add_argument("name")
+    parser.add_argument("--verbose", action="store_true", help="say more")
     args = parser.parse_args()
-    print(greet(args.name))
+    message = greet(args.name)
+    print(message if not args.verbose else f"{message} (from greeter)")
"""

PLAN_MD = """\
## Summary

Add a `--verbose` flag to the greeter CLI that says where the greeting comes from.

## Steps

1. **Add the flag**

   An argparse option in `greeter/__main__.py`.

   - Files:
     - `greeter/__main__.py`

2. **Test it**

   Cover the flag in `tests/test_greet.py`.

## Risks

- None worth noting.
"""


def _at(seconds_ago: float) -> str:
    return (NOW - timedelta(seconds=seconds_ago)).isoformat().replace("+00:00", "Z")


def _run(
    run_id: str, kind: str, status: str, goal: str, ago: float, **extra: Any
) -> dict[str, Any]:
    run: dict[str, Any] = {
        "id": run_id,
        "kind": kind,
        "status": status,
        "goal": goal,
        "workspace": "/home/dev/greeter",
        "agent": {"plan": "planner", "critic": "critic"}.get(kind, "implementer"),
        "model": "openai/gpt-4.1-mini",
        "api_base": None,
        "output": None,
        "error": None,
        "tokens_in": 1840,
        "tokens_out": 312,
        "cost": 0.0,
        "parent_id": None,
        "thread_id": None,
        "last_seq": 0,
        "params": {},
        "pending": None,
        "created_at": _at(ago),
        "updated_at": _at(ago - 5),
        "started_at": _at(ago - 1),
        "finished_at": None,
    }
    run.update(extra)
    return run


WAITING = _run(
    "r_5kq2m7a1b3c4d5e6",
    "implement",
    "needs_approval",
    "make the failing test in tests/test_calc.py pass",
    30,
    agent="careful",
    cost=0.0123,
    pending={
        "kind": "tool",
        "tool": "apply_patch",
        "class": "write",
        "arguments": {"patch": "--- a/calc/__init__.py\n+++ b/calc/__init__.py\n@@ -1 +1 @@"},
        "reason": "agent careful asks before every write (policy ask)",
    },
)
RUNNING = _run(
    "r_5kq2m6z9y8x7w6v5",
    "plan",
    "running",
    "split the parser module into a lexer and a parser",
    130,
    cost=0.0041,
)
PLANNED = _run(
    "r_5kq2m5p4q3r2s1t0",
    "plan",
    "succeeded",
    "add a --verbose flag to the greeter CLI",
    900,
    cost=0.0032,
    output={"plan": {"summary": "Add a --verbose flag."}, "markdown": PLAN_MD},
)
IMPLEMENTED = _run(
    "r_5kq2m4h3g2f1e0d9",
    "implement",
    "succeeded",
    "add a --verbose flag to the greeter CLI",
    720,
    cost=0.0456,
    output={
        "summary": "Added `--verbose` and a test for it.",
        "files": ["greeter/__main__.py"],
        "diff": PATCH,
        "branch": "kyros/r_5kq2m4h3g2f1e0d9",
    },
)
REVIEWED = _run(
    "r_5kq2m3c2b1a0z9y8",
    "critic",
    "succeeded",
    "Review this change.",
    600,
    cost=0.0018,
    output={"markdown": "## Review: pass (82/100)\n\nA small, tested change."},
)
OLDER = [
    _run(
        "r_5kq2m2x1w0v9u8t7",
        "pipeline",
        "failed",
        "migrate the settings to pydantic-settings",
        3 * 3600,
        cost=0.2144,
        error="the critic failed the change twice",
    ),
    _run("r_5kq2m1s0r9q8p7o6", "plan", "cancelled", "explain the job queue", 26 * 3600),
    _run(
        "r_5kq2m0n9m8l7k6j5",
        "implement",
        "budget_exhausted",
        "rewrite the store in Rust",
        2 * 86400,
        cost=0.5,
    ),
]
RUNS = [WAITING, RUNNING, PLANNED, IMPLEMENTED, REVIEWED, *OLDER]

AGENTS = [
    {"name": "careful", "role": "implement", "model": None, "status": "busy",
     "current_run": WAITING["id"]},
    {"name": "critic", "role": "critic", "model": "anthropic/claude-sonnet-4", "status": "idle",
     "current_run": None},
    {"name": "implementer", "role": "implement", "model": None, "status": "idle",
     "current_run": None},
    {"name": "planner", "role": "plan", "model": None, "status": "busy",
     "current_run": RUNNING["id"]},
]  # fmt: skip


def _events(run: dict[str, Any], *items: tuple[str, dict[str, Any]]) -> list[dict[str, Any]]:
    start = datetime.fromisoformat(run["created_at"])
    return [
        {
            "run_id": run["id"],
            "seq": i,
            "type": kind,
            "data": data,
            "created_at": (start + timedelta(seconds=i)).isoformat(),
        }
        for i, (kind, data) in enumerate(items, start=1)
    ]


PLAN_START = (
    ("run.queued", {"kind": "plan", "model": "openai/gpt-4.1-mini", "agent": "planner"}),
    ("run.started", {"status": "running", "attempt": 1}),
    ("progress", {"phase": "context"}),
    ("progress", {"phase": "context.done", "files": 14, "tokens": 5210}),
    ("progress", {"phase": "model", "model": "openai/gpt-4.1-mini"}),
)
EVENTS = {
    WAITING["id"]: _events(
        WAITING,
        ("run.queued", {"kind": "implement", "model": "openai/gpt-4.1-mini", "agent": "careful"}),
        ("run.started", {"status": "running", "attempt": 1}),
        ("sandbox.ready", {"branch": f"kyros/{WAITING['id']}", "root": "/home/dev/.kyros/wt/1"}),
        ("model.request", {"turn": 1, "model": "openai/gpt-4.1-mini"}),
        ("model.delta", {"text": "I will fix the sign in add()."}),
        (
            "model.response",
            {"turn": 1, "tool_calls": [{"function": {"name": "apply_patch"}}]},
        ),
        ("approval.requested", {"pending": WAITING["pending"]}),
    ),
    RUNNING["id"]: _events(
        RUNNING,
        *PLAN_START,
        ("model.delta", {"text": '{\n  "summary": "Split parser.py into lexer.py'}),
        ("model.delta", {"text": ' and parser.py",\n  "steps": [\n    {"title": "Move'}),
    ),
    PLANNED["id"]: _events(
        PLANNED,
        *PLAN_START,
        ("model.delta", {"text": '{"summary": "Add a --verbose flag.", "steps": []}'}),
        ("run.succeeded", {"status": "succeeded"}),
    ),
    IMPLEMENTED["id"]: _events(
        IMPLEMENTED,
        ("run.queued", {"kind": "implement", "model": "openai/gpt-4.1-mini", "agent": "x"}),
        ("run.started", {"status": "running", "attempt": 1}),
        ("model.request", {"turn": 1, "model": "openai/gpt-4.1-mini"}),
        ("model.response", {"turn": 1, "tool_calls": [{"function": {"name": "apply_patch"}}]}),
        ("tool.result", {"tool": "apply_patch", "ok": True}),
        ("run.succeeded", {"status": "succeeded"}),
    ),
}
REVIEWS = {
    IMPLEMENTED["id"]: {
        "children": [],
        "assessments": [
            {
                "id": 7,
                "run_id": REVIEWED["id"],
                "target_run_id": IMPLEMENTED["id"],
                "score": 82,
                "verdict": "pass",
                "summary": "A small, tested change.",
                "findings": [
                    {
                        "severity": "minor",
                        "file": "greeter/__main__.py",
                        "line": 11,
                        "message": "the verbose text could name the module",
                    }
                ],
                "model": "anthropic/claude-sonnet-4",
                "created_at": _at(590),
            }
        ],
        "escalations": [],
    }
}


def _group(
    key: str | None, calls: int, cost: float, unpriced: int = 0, **sources: int
) -> dict[str, Any]:
    return {
        "key": key, "calls": calls, "ok": calls, "failed": 0, "outcomes": {"ok": calls},
        "tokens_in": 1840 * calls, "tokens_out": 312 * calls, "cached_tokens": 0, "cost": cost,
        "unknown_cost_calls": unpriced, "cost_sources": sources, "latency_ms_avg": 900.0,
        "children": [],
    }  # fmt: skip


USAGE = {
    "by": "model",
    "since": None,
    "until": None,
    "run": None,
    "groups": [
        _group("openai/gpt-4.1-mini", 6, 0.0684, listed=5, reported=1),
        _group("anthropic/claude-sonnet-4", 1, 0.0018, configured=1),
        _group("openai/fake-unpriced-model", 2, 0.0, 2, unknown=2),
    ],
    "total": _group(None, 9, 0.0702, 2, listed=5, unknown=2, reported=1, configured=1),
}
USAGE_CALLS = [
    {"id": 9 - i, "created_at": _at(30 + 60 * i), "model": model, "run_id": run["id"],
     "tokens_in": 1840, "tokens_out": 312, "cached_tokens": 0, "cost": cost,
     "cost_source": source, "latency_ms": 900.0, "outcome": "ok"}
    for i, (model, run, cost, source) in enumerate([
        ("openai/gpt-4.1-mini", WAITING, 0.0123, "listed"),
        ("openai/fake-unpriced-model", RUNNING, None, "unknown"),
        ("openai/fake-unpriced-model", RUNNING, None, "unknown"),
        ("openai/gpt-4.1-mini", PLANNED, 0.0032, "reported"),
        ("anthropic/claude-sonnet-4", REVIEWED, 0.0018, "configured"),
    ])
]  # fmt: skip


class FakeDaemon:
    """The client calls the console makes, answered from the fixed data above."""

    def usage(self, by: str = "model", **_: Any) -> dict[str, Any]:
        return USAGE

    def usage_calls(self, **_: Any) -> list[dict[str, Any]]:
        return USAGE_CALLS

    def runs(self, **params: Any) -> list[dict[str, Any]]:
        status = params.get("status")
        return [r for r in RUNS if status is None or r["status"] == status][: params["limit"]]

    def run(self, run_id: str) -> dict[str, Any]:
        for run in RUNS:
            if run["id"] == run_id:
                return run
        raise NotFound(f"no run with id {run_id!r}")

    def review(self, run_id: str) -> dict[str, Any]:
        return REVIEWS.get(run_id, {"children": [], "assessments": [], "escalations": []})

    def events(self, run_id: str, *, after: int = 0, **_: Any) -> Iterator[dict[str, Any]]:
        yield from (e for e in EVENTS.get(run_id, []) if e["seq"] > after)

    def agents_status(self) -> list[dict[str, Any]]:
        return AGENTS

    def create_run(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        raise AssertionError("snapshots start no runs")

    def approve(self, run_id: str, **_: Any) -> dict[str, Any]:
        raise AssertionError("snapshots answer nothing")

    def cancel(self, run_id: str) -> dict[str, Any]:
        raise AssertionError("snapshots cancel nothing")

    def apply(self, run_id: str) -> dict[str, Any]:
        raise AssertionError("snapshots apply nothing")

    def close(self) -> None:
        pass


@pytest.fixture
def app() -> KyrosApp:
    return create_app(
        Connection(FakeDaemon(), LABEL),  # type: ignore[arg-type]
        cwd=Path("/home/dev/greeter"),
        clock=lambda: NOW,
    )


async def _until(pilot: Pilot[Any], check: Callable[[], bool], what: str) -> None:
    for _ in range(100):
        if check():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _steady_cursors(pilot: Pilot[Any]) -> None:
    """A blinking cursor would make the picture depend on timing."""
    for field in pilot.app.screen.query(Input):
        field.cursor_blink = False


async def _loaded(pilot: Pilot[Any], run_id: str | None = None) -> None:
    app = pilot.app
    assert isinstance(app, KyrosApp)
    main = app.main
    await _until(pilot, lambda: main.polls > 0, "the first poll")
    if run_id is not None:
        main.runs_table.select_run(run_id)
    want = run_id or RUNS[0]["id"]
    events = EVENTS.get(want, [])
    await _until(
        pilot,
        lambda: (
            main.detail.run is not None
            and main.detail.run["id"] == want
            # The tabs are built a frame after the pane: query them each time.
            and [len(e.seqs) for e in main.detail.query(RunEvents)] == [len(events)]
        ),
        f"run {want} in the detail pane",
    )
    await pilot.pause(0.1)  # the Markdown result mounts its blocks
    _steady_cursors(pilot)


def test_main_screen(snap_compare: Any, app: KyrosApp) -> None:
    """Runs (newest first), agents, one approval; the waiting run in the detail pane with
    what it waits on and its Approve/Deny/Cancel buttons."""
    assert snap_compare(app, terminal_size=SIZE, run_before=_loaded)


def test_main_screen_at_80x24(snap_compare: Any, app: KyrosApp) -> None:
    """The smallest usual terminal: quit and help first in the footer; the agents and
    approvals give way, and the runs keep id, status, kind, age and goal (agent and cost go)."""
    assert snap_compare(app, terminal_size=(80, 24), run_before=_loaded)


def test_run_detail_plan(snap_compare: Any, app: KyrosApp) -> None:
    """A succeeded plan run: its plan as Markdown in the Result tab."""

    async def before(pilot: Pilot[Any]) -> None:
        await _loaded(pilot, PLANNED["id"])
        await _until(
            pilot,
            lambda: pilot.app.screen.query_one(TabbedContent).active == "tab-output",
            "the result tab",
        )

    assert snap_compare(app, terminal_size=SIZE, run_before=before)


def test_run_detail_diff(snap_compare: Any, app: KyrosApp) -> None:
    """A succeeded implement run's diff, highlighted, in the Diff tab."""

    async def before(pilot: Pilot[Any]) -> None:
        await _loaded(pilot, IMPLEMENTED["id"])
        pilot.app.screen.query_one(TabbedContent).active = "tab-diff"

    assert snap_compare(app, terminal_size=SIZE, run_before=before)


def test_new_run_form(snap_compare: Any, app: KyrosApp) -> None:
    """`n` opens the new-run form: kind, goal, workspace (the current directory), agent,
    model, budget."""

    async def before(pilot: Pilot[Any]) -> None:
        await _loaded(pilot)
        await pilot.press("n")
        await _until(pilot, lambda: type(pilot.app.screen).__name__ == "NewRunScreen", "the form")
        _steady_cursors(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=before)


def test_help_screen(snap_compare: Any, app: KyrosApp) -> None:
    """`?` shows the keys and the panes."""

    async def before(pilot: Pilot[Any]) -> None:
        await _loaded(pilot)
        await pilot.press("question_mark")
        await _until(pilot, lambda: type(pilot.app.screen).__name__ == "HelpScreen", "help")
        await pilot.pause(0.1)

    assert snap_compare(app, terminal_size=SIZE, run_before=before)


def test_usage_screen_at_80x24(snap_compare: Any, app: KyrosApp) -> None:
    """`u`: the known cost, the two calls of unknown cost counted apart (never $0), the
    models with their cost sources, and the newest calls, in 80 columns."""
    from kyros.tui.screens.usage import UsageScreen

    async def before(pilot: Pilot[Any]) -> None:
        await _loaded(pilot)
        await pilot.press("u")
        await _until(
            pilot,
            lambda: (
                isinstance(pilot.app.screen, UsageScreen) and pilot.app.screen.report is not None
            ),
            "the usage",
        )
        await pilot.pause(0.1)

    assert snap_compare(app, terminal_size=(80, 24), run_before=before)


#: What the snapshot's terminal prints (a test run, coloured), then it waits without a prompt.
TEST_RUN = (
    r"printf '\033[1m$ python -m pytest -q\033[0m\r\n"
    r"....\033[31mF\033[0m.\r\n"
    r"\033[31mFAILED\033[0m tests/test_calc.py::test_add - assert -1 == 3\r\n"
    r"\033[1;31m1 failed\033[0m, \033[32m5 passed\033[0m in 0.04s\r\n'; exec sleep 600"
)


@pytest.fixture(scope="module")
def snap_daemon() -> Iterator[Daemon]:
    with xdg_dirs() as env, database("sqlite", env) as url:
        d = start_daemon(kyros_env(env, KYROS_DATABASE_URL=url))
        try:
            yield d
        finally:
            d.stop()


def test_terminals_screen(snap_compare: Any, snap_daemon: Daemon, tmp_path: Path) -> None:
    """A terminal's tab: its coloured output and the cursor after it, drawn from a real daemon
    terminal; while it has the focus the footer offers only the way out and quit."""
    with snap_daemon.client() as c:
        term = c.create_terminal(
            {"name": "tests", "cwd": str(tmp_path), "command": ["/bin/sh", "-c", TEST_RUN]}
        )
    connection = Connection(snap_daemon.client(), f"unix://{snap_daemon.socket}")
    app = create_app(connection, cwd=tmp_path, clock=lambda: NOW)

    async def before(pilot: Pilot[Any]) -> None:
        main = app.main
        await _until(pilot, lambda: main.polls > 0, "the first poll")
        main.action_terminals()
        await _until(
            pilot,
            lambda: isinstance(app.screen, TerminalsScreen) and app.screen.is_mounted,
            "the terminals screen",
        )
        screen = app.screen
        assert isinstance(screen, TerminalsScreen)
        await screen.open_terminal(term)
        view = screen.query_one(TerminalView)
        await _until(
            pilot,
            lambda: view.attached and "in 0.04s" in "".join(view.screen_text()),
            "the terminal's output",
        )
        await pilot.pause(0.1)  # the next frame draws it

    try:
        assert snap_compare(app, terminal_size=SIZE, run_before=before)
    finally:
        connection.dispose()
        with snap_daemon.client() as c:
            c.kill_terminal(term["id"])
