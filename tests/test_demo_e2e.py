"""`--model demo` for every kind, end to end: CLI → real daemon → queue → the scripted model
through litellm's streaming path → real tools on real files, in a real worktree or copy.

The daemon has a second model configured (the fake OpenAI-compatible server on 127.0.0.1) that a
critic would pick as "another provider family": a demo must never call it, whatever is set.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BACKENDS, FAST_QUEUE, Daemon, database, kyros_env, start_daemon, xdg_dirs
from tests.support.buggy_repo import git, make_repo
from tests.support.fake_openai import FakeOpenAI

pytestmark = pytest.mark.e2e

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "greeter"
NOTE = "KYROS-DEMO.md"
BANNER = "scripted demo"


@pytest.fixture(scope="module")
def provider() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as srv:
        yield srv


@pytest.fixture(scope="module", params=BACKENDS)
def demo_daemon(request: pytest.FixtureRequest, provider: FakeOpenAI) -> Iterator[Daemon]:
    """A daemon with a callable non-demo model configured beside the demo."""
    with xdg_dirs() as env, database(request.param, env) as url:
        config = Path(env["XDG_CONFIG_HOME"]) / "kyros" / "config.toml"
        config.parent.mkdir(parents=True)
        config.write_text(
            f'[models.reviewer]\nmodel = "openai/fake-critic"\napi_base = "{provider.url}"\n'
            'key = "none"\n'
        )
        d = start_daemon(kyros_env(env, KYROS_DATABASE_URL=url, **FAST_QUEUE))
        try:
            yield d
        finally:
            d.stop()


@pytest.fixture(params=["greeter", "git-repo"])
def workspace(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """The repository's example (a plain directory: the run works in a copy) or a git repo
    (the run works in a git worktree)."""
    if request.param == "greeter":
        dest = tmp_path / "greeter"
        shutil.copytree(EXAMPLE, dest)
        return dest
    return make_repo(tmp_path / "calc-repo")


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".git" not in p.parts
    }


def _json(out: Any) -> dict[str, Any]:
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    return dict(json.loads(out.stdout))


def _events(d: Daemon, run_id: str) -> list[dict[str, Any]]:
    out = d.cli("runs", "events", run_id, "--jsonl")
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


def test_demo_implement_makes_a_real_edit_through_the_tools(
    demo_daemon: Daemon, workspace: Path, provider: FakeOpenAI
) -> None:
    before, asked = _files(workspace), len(provider.requests)
    out = demo_daemon.cli(
        "run", "implement", "add a --verbose flag", "-w", str(workspace), "-m", "demo", "--json"
    )
    run = _json(out)
    assert run["status"] == "succeeded", run.get("error")
    output = run["output"]
    assert output["files"] == [NOTE]
    assert f"+++ b/{NOTE}" in output["diff"] and "+## add a --verbose flag" in output["diff"]
    assert output["note"].startswith("[scripted demo") and BANNER in output["summary"]
    assert _files(workspace) == before  # only the run's own worktree changed
    # Each step went through a real tool: listed, read (no note yet), wrote, checked by `cat`.
    results = [e["data"] for e in _events(demo_daemon, run["id"]) if e["type"] == "tool.result"]
    assert [(r["tool"], r["ok"]) for r in results] == [
        ("list_files", True),
        ("read_file", False),
        ("write_file", True),
        ("run_command", True),
    ]
    assert "+## add a --verbose flag" not in results[-1]["output"]
    assert "## add a --verbose flag" in results[-1]["output"]  # what `cat` printed
    assert results[2]["changed"] == [NOTE]
    # The human output says it is scripted; `runs diff` shows the same diff.
    shown = demo_daemon.cli("runs", "diff", run["id"])
    assert shown.returncode == 0 and shown.stdout.strip() == output["diff"].strip()
    assert len(provider.requests) == asked  # no provider was called


def test_demo_implement_is_deterministic_and_appends_to_an_earlier_note(
    demo_daemon: Daemon, tmp_path: Path
) -> None:
    first, second = make_repo(tmp_path / "one"), make_repo(tmp_path / "two")
    diffs = []
    for root in (first, second):
        out = demo_daemon.cli("run", "implement", "say hello", "-w", str(root), "-m", "demo")
        assert out.returncode == 0, out.stderr
        assert BANNER in out.stdout and BANNER in out.stderr  # the result and the banner
        assert NOTE in out.stdout
        listed = json.loads(demo_daemon.cli("runs", "list", "--json").stdout)["runs"]
        run_id = next(r["id"] for r in listed if r["workspace"] == str(root))
        diffs.append(json.loads(demo_daemon.cli("runs", "show", run_id, "--json").stdout))
    assert diffs[0]["output"]["diff"] == diffs[1]["output"]["diff"]  # same input, same change
    # Applied and committed, the note is there for the next demo run, which appends to it.
    applied = demo_daemon.cli("run", "apply", diffs[0]["id"])
    assert applied.returncode == 0, applied.stderr
    git(first, "add", "-A")
    git(first, "commit", "-q", "-m", "demo note")
    out = demo_daemon.cli(
        "run", "implement", "say goodbye", "-w", str(first), "-m", "demo", "--json"
    )
    run = _json(out)
    diff = run["output"]["diff"]
    assert "+## say goodbye" in diff and "+## say hello" not in diff  # appended, kept
    assert (first / NOTE).read_text().count("## say") == 1  # the checkout is untouched
    applied = demo_daemon.cli("run", "apply", run["id"])
    assert applied.returncode == 0, applied.stderr
    note = (first / NOTE).read_text()
    assert note.count("# kyros demo notes") == 1
    assert note.index("## say hello") < note.index("## say goodbye")


def test_demo_critic_reviews_with_a_score_and_findings(
    demo_daemon: Daemon, tmp_path: Path, provider: FakeOpenAI
) -> None:
    repo = make_repo(tmp_path / "calc-repo")
    implemented = _json(
        demo_daemon.cli("run", "implement", "x", "-w", str(repo), "-m", "demo", "--json")
    )
    asked = len(provider.requests)
    # Named, and chosen for a demo change even with another model configured.
    for extra in (["-m", "demo"], []):
        out = demo_daemon.cli(
            "run", "critic", "--run", implemented["id"], "-w", str(repo), *extra, "--json"
        )
        run = _json(out)
        assert run["status"] == "succeeded" and run["model"] == "demo"
        assessment = run["output"]["assessment"]
        assert (assessment["score"], assessment["verdict"]) == (80, "pass")
        assert BANNER in assessment["summary"] and run["output"]["note"]
        assert assessment["findings"][0]["file"] == NOTE
        assert assessment["findings"][0]["line"] == 1  # the first added line
        assert run["output"]["markdown"].startswith("> [scripted demo")
    assert len(provider.requests) == asked
    # A diff given on stdin, as in CI; the score passes --fail-under 70.
    change = demo_daemon.cli("runs", "diff", implemented["id"]).stdout
    out = demo_daemon.cli(
        "run",
        "critic",
        "--diff",
        "-",
        "-w",
        str(repo),
        "-m",
        "demo",
        "--fail-under",
        "70",
        input=change,
    )
    assert out.returncode == 0, out.stderr
    assert "pass (80/100)" in out.stdout and BANNER in out.stdout


def test_demo_pipeline_runs_every_stage_and_passes_the_gate(
    demo_daemon: Daemon, workspace: Path, provider: FakeOpenAI
) -> None:
    asked = len(provider.requests)
    out = demo_daemon.cli(
        "run", "pipeline", "add a --verbose flag", "-w", str(workspace), "-m", "demo", "--json"
    )
    run = _json(out)
    assert run["status"] == "succeeded", run.get("error")
    assert run["output"]["stage"] == "critic" and BANNER in run["output"]["note"]
    assert run["output"]["assessment"]["score"] == 80
    review = _json(demo_daemon.cli("runs", "show", run["id"], "--json"))
    stages = [(c["kind"], c["status"], c["model"]) for c in review["children"]]
    assert stages == [
        ("plan", "succeeded", "demo"),
        ("implement", "succeeded", "demo"),
        ("critic", "succeeded", "demo"),
    ]
    implement = review["children"][1]["id"]
    diff = demo_daemon.cli("runs", "diff", run["id"]).stdout
    assert f"+++ b/{NOTE}" in diff
    # The implement stage followed the plan: its note lists the plan's steps.
    assert "+The plan it was given has 3 step(s):" in diff
    assert review["assessments"][0]["target_run_id"] == implement
    assert len(provider.requests) == asked
    # For people: the pipeline's result says it is scripted.
    out = demo_daemon.cli("run", "pipeline", "again", "-w", str(workspace), "-m", "demo")
    assert out.returncode == 0, out.stderr
    assert "passed review" in out.stdout and BANNER in out.stdout
