"""The README played as a new user would, against one daemon the CLI starts itself: the demo,
then a provider key, KYROS_MODEL, config.toml and a project's .kyros.toml, each reaching the
next run with no manual daemon restart (ADR 0017)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import REPO, kyros_env, run_cli
from tests.support.fake_openai import FakeOpenAI, Reply
from tests.test_plan_e2e import VALID_PLAN

KEY = "sk-first-hour-4f2d8a"


def _ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result


def _pid(env: dict[str, str]) -> int:
    status = json.loads(_ok(run_cli(env, "daemon", "status", "--json")).stdout)
    return int(status["health"]["pid"])


def _plan(env: dict[str, str], workspace: Path, *extra: str) -> dict[str, Any]:
    out = _ok(
        run_cli(env, "run", "plan", "add a --verbose flag", "-w", str(workspace), "--json", *extra)
    )
    run: dict[str, Any] = json.loads(out.stdout)
    assert run["status"] == "succeeded", run
    run["stderr"] = out.stderr
    return run


def _asked_for(srv: FakeOpenAI) -> str:
    """The model the fake provider was last asked for, and with which key."""
    last = srv.requests[-1]
    assert last.headers["authorization"] == f"Bearer {KEY}"
    return str(last.body["model"])


def test_the_readme_then_a_key_kyros_model_config_toml_and_a_trusted_project(
    xdg: dict[str, str], fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    fake_openai.default = Reply(text=json.dumps(VALID_PLAN))
    env = kyros_env(xdg)
    config = Path(xdg["XDG_CONFIG_HOME"]) / "kyros" / "config.toml"
    try:
        # 1. "Try it": the demo, on a daemon the CLI starts in the background.
        demo = _ok(
            subprocess.run(
                [
                    *(sys.executable, "-m", "kyros", "run", "plan", "add a --verbose flag"),
                    *("--workspace", "examples/greeter", "--model", "demo"),
                ],
                cwd=REPO,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
        )
        assert "scripted" in (demo.stdout + demo.stderr).lower()
        first = _pid(env)

        # 2. The user exports a provider key (their OpenAI-compatible endpoint too, as a
        #    gateway's users do), then drops --model demo. The idle background daemon is
        #    restarted for them, once.
        env.update(OPENAI_API_KEY=KEY, OPENAI_BASE_URL=fake_openai.url)
        run = _plan(env, REPO / "examples/greeter")
        assert "restarted the idle background daemon" in run["stderr"], run["stderr"]
        assert f"pid {first}" in run["stderr"] and "OPENAI_API_KEY" in run["stderr"]
        assert KEY not in run["stderr"]
        assert _asked_for(fake_openai).startswith("gpt")  # autodetected from the key
        daemon = _pid(env)
        assert daemon != first

        # 3. KYROS_MODEL: sent with the run; the same daemon.
        env["KYROS_MODEL"] = "openai/from-env"
        run = _plan(env, REPO / "examples/greeter")
        assert _asked_for(fake_openai) == "from-env" and run["model"] == "openai/from-env"
        assert "restarted" not in run["stderr"]
        show = json.loads(_ok(run_cli(env, "config", "show", "--json")).stdout)
        model = next(e for e in show["entries"] if e["key"] == "model")
        assert model["source"] == "env KYROS_MODEL" and model["daemon"]["sent_with_runs"]
        assert "sent with each run" in _ok(run_cli(env, "config", "show")).stdout

        # 4. config.toml: the daemon re-reads it before the next run.
        del env["KYROS_MODEL"]
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text('model = "openai/from-config"\n')
        run = _plan(env, REPO / "examples/greeter")
        assert _asked_for(fake_openai) == "from-config"
        show = json.loads(_ok(run_cli(env, "config", "show", "--json")).stdout)
        model = next(e for e in show["entries"] if e["key"] == "model")
        assert model["value"] == "openai/from-config"
        assert model["daemon"]["value"] == "openai/from-config"
        assert model["daemon"]["source"].startswith("user config")

        # 5. A project's .kyros.toml: ignored with a hint until trusted, then sent with runs.
        project = tmp_path / "project"
        shutil.copytree(REPO / "examples/greeter", project)
        (project / ".kyros.toml").write_text('model = "openai/from-project"\n')
        ignored = _plan(env, project)
        assert _asked_for(fake_openai) == "from-config"
        assert f"{project / '.kyros.toml'} is not trusted" in ignored["stderr"]
        text = _ok(run_cli(env, "config", "show", "-w", str(project))).stdout
        assert "not trusted" in text and "trusted_projects" in text
        config.write_text(f'model = "openai/from-config"\ntrusted_projects = ["{project}"]\n')
        run = _plan(env, project)
        assert _asked_for(fake_openai) == "from-project"
        show = json.loads(_ok(run_cli(env, "config", "show", "-w", str(project), "--json")).stdout)
        assert show["project"]["trusted"] is True
        events = _ok(run_cli(env, "runs", "events", run["id"], "--jsonl")).stdout
        queued = json.loads(events.splitlines()[0])
        assert queued["data"]["settings_from"]["model"].startswith("project config")

        assert _pid(env) == daemon  # one daemon across steps 3-5, as a user would have it
        for secret_place in (events, json.dumps(show)):
            assert KEY not in secret_place
    finally:
        run_cli(env, "daemon", "stop")


def test_a_busy_daemon_is_not_restarted_and_the_user_is_told_what_to_run(
    xdg: dict[str, str], fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    env = kyros_env(xdg, KYROS_API_BASE=fake_openai.url, KYROS_MODEL="openai/fake")
    workspace = tmp_path / "ws"
    shutil.copytree(REPO / "examples/greeter", workspace)
    fake_openai.enqueue(Reply(text=json.dumps(VALID_PLAN), delay_first_chunk=8))
    fake_openai.default = Reply(text=json.dumps(VALID_PLAN))
    try:
        slow = _ok(run_cli(env, "run", "plan", "slow", "-w", str(workspace), "--detach"))
        busy_pid = _pid(env)
        fake_openai.wait_for_requests(1, timeout=60)
        env["OPENAI_API_KEY"] = KEY
        run = _plan(env, workspace)  # works: the server needs no key
        assert _pid(env) == busy_pid
        assert (
            f"the daemon (pid {busy_pid}, started " in run["stderr"]
            and "does not see OPENAI_API_KEY: `kyros daemon restart`, or "
            "`kyros auth set-key openai`"
            in run["stderr"]
        ), run["stderr"]
        assert "running job" in run["stderr"]
        shown = _ok(run_cli(env, "config", "show")).stdout
        assert "does not see OPENAI_API_KEY" in shown

        # The command it names does it: the running job goes back to the queue and the new
        # daemon (with this shell's key) finishes it.
        restarted = _ok(run_cli(env, "daemon", "restart", timeout=90))
        assert f"stopped pid {busy_pid}" in restarted.stdout
        assert "does not see" not in _ok(run_cli(env, "config", "show")).stdout
        run_id = slow.stdout.strip()
        final = _ok(run_cli(env, "runs", "show", run_id, "--json", timeout=90))
        assert json.loads(final.stdout)["id"] == run_id
    finally:
        run_cli(env, "daemon", "stop")
