"""The console's usage screen against a real daemon (SQLite, temp socket) whose ledger holds a
call of reported cost and one of unknown cost (an unpriced model, with ``free_loopback`` off),
both made through the fake OpenAI-compatible server: the known total, the unpriced call
counted apart, and each call's cost source."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Static

from kyros.tui.app import create_app
from kyros.tui.connection import Connection
from kyros.tui.screens.usage import UsageScreen
from tests.conftest import FAST_QUEUE, database, kyros_env, start_daemon, xdg_dirs
from tests.support.buggy_repo import make_repo
from tests.support.fake_openai import FakeOpenAI, Reply
from tests.test_plan_e2e import VALID_PLAN

pytestmark = pytest.mark.e2e

UNPRICED = "openai/fake-unpriced-model"


async def until(pilot: Pilot[Any], check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if check():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def shown(screen: UsageScreen, widget_id: str) -> str:
    """The text a Static of the screen draws, as plain text."""
    static = screen.query_one(f"#{widget_id}", Static)
    return "\n".join(strip.text for strip in static.render_lines(static.region.reset_offset))


async def test_usage_screen_shows_known_cost_unpriced_calls_apart_and_sources(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    workspace = make_repo(tmp_path / "calc-repo")
    fake_openai.enqueue(
        Reply(text=json.dumps(VALID_PLAN), cost=0.0421), Reply(text=json.dumps(VALID_PLAN))
    )
    with xdg_dirs() as env, database("sqlite", env) as url:
        d = start_daemon(
            kyros_env(
                env,
                KYROS_DATABASE_URL=url,
                OPENAI_API_KEY="sk-usage-screen-1",
                KYROS_FREE_LOOPBACK="false",
                **FAST_QUEUE,
            )
        )
        try:
            plan = ["run", "plan", "add a flag", "-w", str(workspace), "--json"]
            for model in ("openai/gpt-4.1-mini", UNPRICED):
                out = d.cli(*plan, "--model", model, "--api-base", fake_openai.url)
                assert out.returncode == 0, out.stdout + out.stderr
            connection = Connection(d.client(), f"unix://{d.socket}")
            app = create_app(connection, cwd=workspace, poll_seconds=0.3)
            async with app.run_test(size=(80, 24)) as pilot:
                await until(pilot, lambda: app.main.polls > 0, "the first poll")
                await pilot.press("u")
                await until(pilot, lambda: isinstance(app.screen, UsageScreen), "the screen")
                screen = app.screen
                assert isinstance(screen, UsageScreen)
                await until(pilot, lambda: screen.report is not None, "the usage")
                await pilot.pause(0.1)
                totals = shown(screen, "usage-totals")
                assert "$0.0421" in totals and "of 1 priced call" in totals, totals
                assert "Unpriced    1 call of unknown cost" in totals, totals
                assert "reported 1, unknown 1" in totals, totals
                groups = shown(screen, "usage-groups")
                assert "reported" in groups and "unknown" in groups and "$0.0000" not in groups
                calls = shown(screen, "usage-calls")
                assert "unknown" in calls and "reported" in calls, calls
                # By run: one row per plan run; escape goes back to the runs.
                await pilot.press("g")
                await until(
                    pilot,
                    lambda: screen.by == "run" and screen.report is not None,
                    "the usage by run",
                )
                assert screen.report is not None
                assert len(screen.report["groups"]) == 2
                await pilot.press("escape")
                await until(pilot, lambda: app.screen is app.main, "the main screen")
        finally:
            d.stop()


async def test_usage_screen_says_when_the_daemon_does_not_answer(tmp_path: Path) -> None:
    from kyros.client import Client
    from kyros.client.discovery import DaemonTarget

    missing = tmp_path / "nobody.sock"
    client = Client(DaemonTarget(base_url="http://kyros", uds=str(missing), local=False))
    app = create_app(Connection(client, f"unix://{missing}"), cwd=tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        app.push_screen(UsageScreen(app.connection))
        await until(pilot, lambda: isinstance(app.screen, UsageScreen), "the screen")
        screen = app.screen
        assert isinstance(screen, UsageScreen)
        await until(pilot, lambda: screen.problem is not None, "the failure")
        await pilot.pause(0.1)
        assert "does not answer" in shown(screen, "usage-totals")
        assert "does not answer" in shown(screen, "usage-head")


async def test_run_pane_shows_a_pipelines_totals_with_its_stages(
    tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    from tests.support.buggy_repo import FIX, call
    from tests.test_pipeline_e2e import PLAN, verdict

    repo = make_repo(tmp_path / "calc-repo")
    fake_openai.enqueue(
        Reply(text=json.dumps(PLAN), cost=0.01),
        Reply(tool_calls=[call("c1", "apply_patch", patch=FIX)], cost=0.02),
        Reply(text="fixed", cost=0.02),
        Reply(text=verdict("pass", 88).text, cost=0.005),
    )
    with xdg_dirs() as env, database("sqlite", env) as url:
        d = start_daemon(kyros_env(env, KYROS_DATABASE_URL=url, **FAST_QUEUE))
        try:
            out = d.cli(
                "run", "pipeline", "make the tests pass", "-w", str(repo),
                "--model", "openai/fake-coder", "--api-base", fake_openai.url, "--json",
            )  # fmt: skip
            assert out.returncode == 0, out.stdout + out.stderr
            run_id = json.loads(out.stdout)["id"]
            with d.client() as c:
                run, review = c.run(run_id), c.review(run_id)
            # The daemon's run carries its stages' cost and tokens; the review, the calls.
            stage_cost = sum(k["cost"] for k in review["children"])
            assert run["cost"] == pytest.approx(stage_cost) == pytest.approx(0.055)
            assert run["tokens_out"] == sum(k["tokens_out"] for k in review["children"]) > 0
            assert review["usage"]["calls"] == 4
            app = create_app(Connection(d.client(), f"unix://{d.socket}"), cwd=repo)
            async with app.run_test(size=(150, 42)) as pilot:
                # The first poll shows the newest run (the critic stage): then the pipeline.
                await until(pilot, lambda: app.main.detail.run_id is not None, "a run shown")
                app.main.runs_table.select_run(run_id)
                head = app.main.detail.query_one("#detail-head", Static)

                def text() -> str:
                    return "\n".join(s.text for s in head.render_lines(head.region.reset_offset))

                await until(
                    pilot,
                    lambda: text().startswith(run_id) and "model calls" in text(),
                    "the pipeline's head",
                )
                shown_head = text()
                assert "cost so far with its stages' $0.0550" in shown_head, shown_head
                assert f"{run['tokens_in']}→{run['tokens_out']} tokens" in shown_head
                assert "4 model calls" in shown_head, shown_head
        finally:
            d.stop()
