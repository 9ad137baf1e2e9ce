"""A run kind added by a plugin (the `plugins` setting) runs end to end from the CLI, with the
events, approvals, budgets and errors of the built-in kinds; an unknown kind is refused with
the list of kinds there are.

CLI → real daemon loading tests.support.runkinds → queue → the plugin's RunExecutor → routing
over real HTTP to a fake OpenAI-compatible server.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Daemon, start_daemon
from tests.support.fake_openai import FakeOpenAI, Reply

pytestmark = pytest.mark.e2e


@pytest.fixture
def plugged(daemon_env: dict[str, str], fake_openai: FakeOpenAI) -> Iterator[Daemon]:
    models = {
        "priced": {
            "model": "openai/fake-priced",
            "api_base": fake_openai.url,
            "key": "none",
            "price_in": 0.0,
            "price_out": 1000.0,  # $0.001 per output token, at most 1,000 tokens: $1 a call
            "max_output": 1000,
        }
    }
    env = {
        **daemon_env,
        "KYROS_PLUGINS": "tests.support.runkinds",
        "KYROS_MODELS": json.dumps(models),
        "OPENAI_API_KEY": "sk-plugin-runs-0000",
    }
    d = start_daemon(env)
    try:
        yield d
    finally:
        d.stop()


def _summarize(d: Daemon, srv: FakeOpenAI, goal: str, *extra: str) -> Any:
    return d.cli(
        "run", "custom", "summarize", goal, "--model", "openai/fake", "--api-base", srv.url, *extra
    )


def _events(d: Daemon, run_id: str) -> list[dict[str, Any]]:
    with d.client() as c:
        return list(c.events(run_id, follow=False))


def test_a_plugin_run_kind_runs_end_to_end_from_the_cli(
    plugged: Daemon, fake_openai: FakeOpenAI, tmp_path: Any
) -> None:
    fake_openai.enqueue(Reply(text="A calculator that adds numbers.", chunk_size=4))
    out = _summarize(plugged, fake_openai, "calc adds numbers", "-w", str(tmp_path), "--json")
    assert out.returncode == 0, out.stderr
    run = json.loads(out.stdout)
    assert run["kind"] == "summarize" and run["status"] == "succeeded"
    assert run["output"] == {"summary": "A calculator that adds numbers."}
    assert fake_openai.requests[0].body["messages"][1]["content"] == "calc adds numbers"
    types = [e["type"] for e in _events(plugged, run["id"])]
    assert types[:2] == ["run.queued", "run.started"] and types[-1] == "run.succeeded"
    assert "model.delta" in types  # streamed like any run
    calls = json.loads(plugged.cli("usage", "--calls", "--run", run["id"], "--json").stdout)
    assert [c["outcome"] for c in calls] == ["ok"]  # in the ledger
    listed = json.loads(plugged.cli("runs", "list", "--kind", "summarize", "--json").stdout)["runs"]
    assert [r["id"] for r in listed] == [run["id"]]


def test_an_unknown_kind_is_refused_with_the_kinds_there_are(
    plugged: Daemon, fake_openai: FakeOpenAI, tmp_path: Any
) -> None:
    out = plugged.cli("run", "custom", "nosuch", "x", "-w", str(tmp_path))
    assert out.returncode == 2, (out.returncode, out.stderr)
    assert "unknown run kind 'nosuch'" in out.stderr
    # The built-ins, then the plugin's.
    assert "critic, implement, pipeline, plan, summarize" in " ".join(out.stderr.split())
    assert fake_openai.requests == []


def test_a_plugin_run_waits_for_approval_then_goes_on(
    plugged: Daemon, fake_openai: FakeOpenAI, tmp_path: Any
) -> None:
    fake_openai.enqueue(Reply(text="Approved summary."))
    out = _summarize(plugged, fake_openai, "[ask] publish this", "-w", str(tmp_path), "--json")
    assert out.returncode == 5, out.stderr  # needs approval
    run = json.loads(out.stdout)
    assert run["status"] == "needs_approval" and run["pending"]["tool"] == "publish_summary"
    assert fake_openai.requests == []  # nothing called before the answer
    assert plugged.cli("run", "approve", run["id"]).returncode == 0
    deadline = time.monotonic() + 60
    with plugged.client() as c:
        while (done := c.run(run["id"]))["status"] not in ("succeeded", "failed"):
            assert time.monotonic() < deadline
            time.sleep(0.1)
    assert done["status"] == "succeeded" and done["output"]["summary"] == "Approved summary."


def test_a_plugin_run_keeps_to_its_budget_and_reports_provider_errors(
    plugged: Daemon, fake_openai: FakeOpenAI, tmp_path: Any
) -> None:
    capped = plugged.cli(
        "run",
        "custom",
        "summarize",
        "text",
        "-w",
        str(tmp_path),
        "--model",
        "priced",
        "--budget",
        "0.5",
        "--json",
    )
    assert capped.returncode == 1, capped.stderr
    assert json.loads(capped.stdout)["status"] == "budget_exhausted"
    assert fake_openai.requests == []  # stopped before the call that could pass the cap

    fake_openai.enqueue(Reply.error(500, "the provider broke"), Reply.error(500, "still broken"))
    failed = _summarize(plugged, fake_openai, "text", "-w", str(tmp_path), "--json")
    assert failed.returncode == 1
    run = json.loads(failed.stdout)
    assert run["status"] == "failed" and "still broken" in run["error"]
    final = _events(plugged, run["id"])[-1]
    assert final["type"] == "run.failed"
    assert [a["outcome"] for a in final["data"]["attempts"]] == ["provider", "provider"]
