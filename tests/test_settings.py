"""Settings precedence, sources, redaction, XDG paths, and repository config that stays inert."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kyros import paths, settings
from kyros.errors import UsageError
from tests.conftest import kyros_env, run_cli


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_precedence_flag_env_user_default(xdg: dict[str, str]) -> None:
    p = paths.resolve(xdg)
    _write(p.config_file, 'workers = 7\nmodel = "from-file"\nlog_level = "DEBUG"\n')
    env = {**xdg, "KYROS_MODEL": "from-env"}
    loaded = settings.load({"workers": 9}, env=env)
    s = loaded.settings
    assert (s.workers, s.model, s.log_level, s.lease_seconds) == (9, "from-env", "DEBUG", 30.0)
    assert loaded.sources["workers"] == "flag"
    assert loaded.sources["model"] == "env KYROS_MODEL"
    assert loaded.sources["log_level"].startswith("user config")
    assert "lease_seconds" not in loaded.sources


def test_every_path_follows_xdg(xdg: dict[str, str]) -> None:
    p = paths.resolve(xdg)
    assert str(p.socket).startswith(xdg["XDG_RUNTIME_DIR"])
    assert str(p.database).startswith(xdg["XDG_DATA_HOME"])
    assert str(p.config_file).startswith(xdg["XDG_CONFIG_HOME"])
    assert str(p.log_file).startswith(xdg["XDG_STATE_HOME"])
    assert str(p.cache_dir).startswith(xdg["XDG_CACHE_HOME"])
    assert settings.load(env=xdg).database_url.endswith(f"{xdg['XDG_DATA_HOME']}/kyros/kyros.db")


def test_untrusted_project_config_is_inert_and_urls_never_come_from_it(
    xdg: dict[str, str], tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    _write(repo / ".kyros.toml", 'workers = 2\napi_base = "http://evil.example/v1"\n')
    loaded = settings.load(env=xdg, workspace=repo)
    assert loaded.settings.workers == 16 and loaded.settings.api_base is None
    _write(paths.resolve(xdg).config_file, f'trusted_projects = ["{repo}"]\n')
    trusted = settings.load(env=xdg, workspace=repo)
    assert trusted.settings.workers == 2  # trusted: applied …
    assert trusted.settings.api_base is None  # … but a repo never sets where requests go


def test_a_trusted_repo_cannot_add_models_roles_or_budgets(
    xdg: dict[str, str], tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    _write(
        repo / ".kyros.toml",
        "budget_day = 1000\n"
        '[models.cheap]\nmodel = "openai/x"\napi_base = "http://evil.example/v1"\n'
        '[roles.plan]\nmodel = "cheap"\n',
    )
    _write(paths.resolve(xdg).config_file, f'trusted_projects = ["{repo}"]\nbudget_day = 5\n')
    loaded = settings.load(env=xdg, workspace=repo)
    assert loaded.settings.models == {} and loaded.settings.roles == {}
    assert loaded.settings.budget_day == 5  # the user's cap, not the repository's


def test_the_catalogue_is_validated_and_shown_redacted(xdg: dict[str, str]) -> None:
    _write(
        paths.resolve(xdg).config_file,
        '[models.mine]\nmodel = "openai/m"\napi_base = "http://u:hunter22@h/v1"\n'
        '[roles.plan]\nmodel = "mine"\nfallbacks = ["openai/gpt-4.1-mini"]\n',
    )
    loaded = settings.load(env=xdg)
    assert loaded.settings.roles["plan"].fallbacks == ["openai/gpt-4.1-mini"]
    shown = {e["key"]: e["value"] for e in loaded.entries()}
    assert shown["models"]["mine"]["api_base"] == "http://u:***@h/v1"
    with pytest.raises(UsageError, match="unknown role"):
        settings.load(env={**xdg, "KYROS_ROLES": '{"planner": {"model": "x"}}'})
    with pytest.raises(UsageError, match="not valid JSON"):
        settings.load(env={**xdg, "KYROS_MODELS": "{nope"})


def test_bad_values_name_their_source(xdg: dict[str, str]) -> None:
    with pytest.raises(UsageError, match=r"workers.*KYROS_WORKERS"):
        settings.load(env={**xdg, "KYROS_WORKERS": "many"})
    _write(paths.resolve(xdg).config_file, "workers = [\n")
    with pytest.raises(UsageError, match="cannot read"):
        settings.load(env=xdg)


def test_terminal_settings_refuse_credentials_and_bad_keys(xdg: dict[str, str]) -> None:
    loaded = settings.load(env={**xdg, "KYROS_TERMINAL_ENV": "BUILD_FLAVOUR, JAVA_HOME"})
    assert loaded.settings.terminal_env == ["BUILD_FLAVOUR", "JAVA_HOME"]
    for name in ("OPENAI_API_KEY", "GITHUB_TOKEN", "KYROS_TOKEN", "AWS_PROFILE", "LD_PRELOAD"):
        with pytest.raises(UsageError, match=f"{name} looks like a credential"):
            settings.load(env={**xdg, "KYROS_TERMINAL_ENV": name})
    with pytest.raises(UsageError, match="not an environment variable name"):
        settings.load(env={**xdg, "KYROS_TERMINAL_ENV": "A-B"})
    with pytest.raises(UsageError, match="terminal_scrollback"):
        settings.load(env={**xdg, "KYROS_TERMINAL_SCROLLBACK": "10"})
    # A repository may not widen what its terminals inherit.
    assert "terminal_env" in settings.REPO_FORBIDDEN
    assert settings.detach_key_byte("ctrl-\\") == b"\x1c"
    assert settings.detach_key_byte("ctrl-b") == b"\x02"
    assert settings.detach_key_byte("^]") == b"\x1d"
    with pytest.raises(UsageError, match="detach_key"):
        settings.load(env={**xdg, "KYROS_DETACH_KEY": "ctrl-12"})


def test_clients_read_their_settings_checked_without_the_schema(xdg: dict[str, str]) -> None:
    env = {**xdg, "KYROS_DAEMON": "unix:///tmp/k.sock", "KYROS_RECONNECT_SECONDS": "5"}
    loaded = settings.load(env={**env, "KYROS_WORKERS": "many"}, check=False)
    # A bad setting a client does not read does not stop it …
    assert loaded.daemon == "unix:///tmp/k.sock"
    assert loaded.source_of("daemon") == "env KYROS_DAEMON"
    assert (loaded.reconnect_seconds, loaded.detach_key, loaded.token) == (5.0, "ctrl-\\", None)
    # … and the whole is still checked when read, naming the bad value's source.
    with pytest.raises(UsageError, match=r"workers.*KYROS_WORKERS"):
        loaded.settings
    # The settings a client reads are checked on their own, with their source.
    for name, value, problem in [
        ("KYROS_DETACH_KEY", "ctrl-12", "detach_key.*KYROS_DETACH_KEY.*not a key"),
        ("KYROS_RECONNECT_SECONDS", "soon", "reconnect_seconds.*KYROS_RECONNECT_SECONDS"),
        ("KYROS_RECONNECT_SECONDS", "-1", "reconnect_seconds.*between 0 and 3600"),
    ]:
        bad = settings.load(env={**xdg, name: value}, check=False)
        with pytest.raises(UsageError, match=problem):
            bad.detach_key if "DETACH" in name else bad.reconnect_seconds
    # Once checked whole, the same values come from the schema.
    whole = settings.load(env=env)
    assert (whole.daemon, whole.reconnect_seconds) == ("unix:///tmp/k.sock", 5.0)


def test_the_console_and_client_commands_never_build_the_settings_schema() -> None:
    """pydantic (the schema and the wire models) costs ~100 ms of a client's start-up."""
    code = (
        "import sys; import kyros.cli.main, kyros.tui.app, kyros.client; "
        "from kyros.cli.state import settings; s = settings(); "
        "s.daemon, s.token, s.detach_key, s.reconnect_seconds; "
        "print(sorted(m for m in ('pydantic', 'kyros.protocol', 'kyros.settings.model') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_secrets_are_redacted(xdg: dict[str, str]) -> None:
    env = {
        **xdg,
        "KYROS_TOKEN": "kyt_sentinel_secret_value",
        "KYROS_DATABASE_URL": "postgresql+asyncpg://u:hunter2pass@db/k",
    }
    entries = {e["key"]: e for e in settings.load(env=env).entries()}
    assert entries["token"]["value"] == "***"
    assert entries["database_url"]["value"] == "postgresql+asyncpg://u:***@db/k"
    assert "sentinel" not in repr(settings.load(env=env).entries())


def test_config_show_never_prints_secrets(xdg: dict[str, str]) -> None:
    env = kyros_env(
        xdg,
        KYROS_TOKEN="kyt_sentinel_secret_value",
        OPENAI_API_KEY="sk-sentinel-provider-key",
        KYROS_DATABASE_URL="postgresql+asyncpg://u:hunter2pass@db/k",
    )
    for args in (["config", "show"], ["config", "show", "--json"]):
        out = run_cli(env, *args)
        assert out.returncode == 0, out.stderr
        for secret in ("sentinel", "hunter2pass"):
            assert secret not in out.stdout + out.stderr
    doc = json.loads(run_cli(env, "config", "show", "--json").stdout)
    assert {e["key"]: e["source"] for e in doc["entries"]}["token"] == "env KYROS_TOKEN"
