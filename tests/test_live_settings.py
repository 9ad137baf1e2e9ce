"""A running daemon's settings: the config file re-read when it changes, per-run choices from the
client, and provider keys compared by fingerprint (ADR 0017). In-process core, real store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kyros.client.lifecycle import key_problems, problem_words
from kyros.errors import ModelNotConfigured, UsageError


def _config(xdg: dict[str, str]) -> Path:
    path = Path(xdg["XDG_CONFIG_HOME"]) / "kyros" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


async def test_a_changed_config_file_reaches_the_next_run_and_a_broken_one_refuses_runs(
    core: Any, xdg: dict[str, str], tmp_path: Path
) -> None:
    config = _config(xdg)
    with pytest.raises(ModelNotConfigured):
        await core.runs.create("plan", "goal", str(tmp_path))

    config.write_text('model = "demo"\n')
    run = await core.runs.create("plan", "goal", str(tmp_path))
    assert run["model"] == "demo"
    assert core.live.source_of("model") == f"user config ({config})"

    config.write_text("model = 3   # not a model name\n")
    with pytest.raises(UsageError) as refused:
        await core.runs.create("plan", "goal", str(tmp_path))
    assert "config file changed and cannot be used" in refused.value.message
    assert "model" in refused.value.message and "goes on with the settings" in refused.value.message
    assert len(await core.runs.list_runs()) == 1  # nothing was queued
    assert core.settings.model == "demo"  # the last good settings stay in effect

    config.write_text('model = "demo"\nworkers = 3\nbudget_day = 2.5\n')
    await core.runs.create("plan", "goal", str(tmp_path))
    assert core.live.restart_needed == ["workers"]
    entries = {e["key"]: e for e in core.live.entries()}
    assert entries["workers"]["value"] == core.loaded.settings.workers  # read at start
    assert entries["workers"]["pending"] == 3
    assert entries["budget_day"]["value"] == 2.5 and "pending" not in entries["budget_day"]
    assert core.catalogue.settings.budget_day == 2.5  # what runs' budgets read

    config.unlink()  # no file: the defaults again
    with pytest.raises(ModelNotConfigured):
        await core.runs.create("plan", "goal", str(tmp_path))


async def test_choices_sent_with_a_run_stand_for_the_daemons_model_setting(
    core: Any, xdg: dict[str, str], tmp_path: Path
) -> None:
    _config(xdg).write_text('model = "openai/not-configured"\n')
    sources = {"model": f"project config ({tmp_path / '.kyros.toml'})"}
    run = await core.runs.create(
        "plan", "goal", str(tmp_path), choices={"model": "demo", "sources": sources}
    )
    assert run["model"] == "demo"
    events = await core.runs.events_after(run["id"], 0)
    assert events[0]["data"]["settings_from"] == sources
    # The run's own --model still wins over the client's settings.
    with pytest.raises(ModelNotConfigured, match="OPENAI_API_KEY"):
        await core.runs.create(
            "plan", "goal", str(tmp_path), model="openai/gpt-x", choices={"model": "demo"}
        )


async def test_provider_keys_are_compared_by_fingerprint_never_sent(
    xdg: dict[str, str], tmp_path: Path
) -> None:
    from kyros import settings
    from kyros.core.app import Core

    url = f"sqlite+aiosqlite:///{tmp_path / 'k.db'}"
    loaded = settings.load({"database_url": url}, env={**xdg, "OPENAI_API_KEY": "sk-daemon-1"})
    core = Core(loaded, autostarted=True)
    await core.start(warm_backend=False)
    try:
        view = json.loads(json.dumps(await core.daemon_view(), default=str))
    finally:
        await core.stop()
    assert "sk-daemon-1" not in json.dumps(view)
    assert view["autostarted"] is True and view["idle"] is True
    assert [k["env_var"] for k in view["keys"]] == ["OPENAI_API_KEY"]

    assert key_problems(view, {"OPENAI_API_KEY": "sk-daemon-1"}) == []
    other, missing = key_problems(
        view, {"OPENAI_API_KEY": "sk-daemon-2", "ANTHROPIC_API_KEY": "sk-ant"}
    )[::-1]
    assert (missing.env_var, missing.missing) == ("ANTHROPIC_API_KEY", True)
    assert (other.env_var, other.missing, other.daemon_source) == (
        "OPENAI_API_KEY",
        False,
        "environment",
    )
    words = problem_words(view, missing)
    assert words.startswith(f"the daemon (pid {view['pid']}, started ")
    assert words.endswith(
        "does not see ANTHROPIC_API_KEY: `kyros daemon restart`, or `kyros auth set-key anthropic`"
    )
    assert "another OPENAI_API_KEY (environment)" in problem_words(view, other)
