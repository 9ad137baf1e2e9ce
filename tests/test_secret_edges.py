"""RELIABILITY S11 at the edges: a key pasted into any setting, environment variable or terminal
setting is refused or hidden — it appears in no output of `kyros config show` (text and
``--json``), ``GET /v1/config``, the daemon's log or a terminal's environment — and an oversized
chunked request body gets 413."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kyros import paths, settings
from kyros.errors import UsageError
from kyros.redaction import looks_like_secret, redact_shapes
from kyros.settings.model import Settings
from tests.conftest import kyros_env, run_cli, start_daemon, xdg_dirs

#: One key with a known prefix, one bare random token: both must be caught by their shape.
SENTINELS = {
    "prefixed": "sk-ant-api03-" + secrets.token_urlsafe(24),
    "random": secrets.token_urlsafe(24).replace("-", "x").replace("_", "y") + "Q7",
}


@pytest.mark.parametrize(
    "key",
    [
        "sk-" + "a1B2" * 8,
        "sk-ant-api03-" + "Zx9_" * 6,
        "sk-proj-" + "k3Y" * 8,
        "ghp_" + "a1b2C3" * 6,
        "github_pat_11ABCDEFG0" + "x_Y1" * 6,
        "xoxb-1234567890-abcdefghij",
        "AKIAIOSFODNN7EXAMPLE",
        "AIza" + "Sy9" * 12,
        "glpat-" + "Ab1" * 7,
        "hf_" + "aB3" * 9,
        # Random per run: the ids stay fixed, as parallel test workers must agree on them.
        *(pytest.param(value, id=f"sentinel-{kind}") for kind, value in SENTINELS.items()),
    ],
)
def test_key_shapes_are_recognised(key: str) -> None:
    assert looks_like_secret(key)
    assert key not in redact_shapes(f"value={key};")


@pytest.mark.parametrize(
    "text",
    [
        "openai/gpt-4.1-mini",
        "anthropic/claude-3-5-sonnet-20241022",
        "gemini/gemini-2.0-flash-thinking-exp-01-21",
        "ollama_chat/qwen2.5-coder:32b-instruct-q4_K_M",
        "postgresql+asyncpg://postgres@127.0.0.1:5432/kyros_t_a1b2c3d4e5f6",
        "/tmp/ky-6c89bf92/data/kyros/kyros.db",
        "summarize_everything_quickly",
        "BUILD_FLAVOUR",
    ],
)
def test_names_are_not_taken_for_keys(text: str) -> None:
    assert not looks_like_secret(text)
    assert redact_shapes(text) == text


def test_a_key_in_the_provider_field_is_refused_with_what_the_field_wants(
    xdg: dict[str, str],
) -> None:
    key = SENTINELS["prefixed"]
    config = paths.resolve(xdg).config_file
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(f'[models.x]\nmodel = "openai/gpt-4.1-mini"\nkey = "{key}"\n')
    with pytest.raises(UsageError) as info:
        settings.load(env=xdg)
    message = info.value.message
    assert "models.x.key" in message and "names the provider" in message
    assert "kyros auth set-key" in message
    assert key not in message
    r = run_cli(kyros_env(xdg), "config", "show", "--json")
    assert r.returncode == 2 and key not in r.stdout + r.stderr
    assert "models.x.key" in r.stderr


def _string_fields() -> list[str]:
    return list(Settings.model_fields)


@pytest.mark.parametrize("kind", list(SENTINELS))
def test_a_key_in_any_setting_never_prints(xdg: dict[str, str], kind: str) -> None:
    """Each setting in turn gets the key (as KYROS_<FIELD>, and inside every field of a
    catalogue entry and a role): refused with a message that does not quote it, or accepted and
    shown as ***. Then every setting that accepted it at once, through the CLI."""
    key = SENTINELS[kind]
    accepted: dict[str, str] = {}
    for field in _string_fields():
        value = key
        if field == "models":
            value = json.dumps(
                {"x": {"model": "openai/gpt-4.1-mini", "api_base": f"http://h/{key}"}}
            )
        elif field == "roles":
            value = json.dumps({"plan": {"model": key}})
        env = {**xdg, f"KYROS_{field.upper()}": value}
        try:
            loaded = settings.load(env=env)
        except UsageError as exc:
            assert key not in exc.message, field
            continue
        assert key not in json.dumps(loaded.entries()), field
        accepted[f"KYROS_{field.upper()}"] = value
    for field, spec in {
        "key": {"model": "openai/gpt-4.1-mini", "key": key},
        "model": {"model": key},
    }.items():
        with pytest.raises(UsageError) as info:
            settings.load(env={**xdg, "KYROS_MODELS": json.dumps({"x": spec})})
        assert key not in info.value.message and f"models.x.{field}" in info.value.message
    # What took a key as a value: a URL, paths, host names; the token is secret by name.
    assert {"KYROS_TOKEN", "KYROS_API_BASE", "KYROS_MODELS"} <= set(accepted)
    assert "KYROS_MODEL" not in accepted and "KYROS_TERMINAL_ENV" not in accepted
    env = kyros_env(xdg, **accepted)
    for args in (("config", "show"), ("config", "show", "--json")):
        r = run_cli(env, *args)
        assert r.returncode == 0, r.stderr
        assert key not in r.stdout + r.stderr
        assert "***" in r.stdout


@pytest.mark.parametrize(
    "name", ["GITHUB_PAT", "PAT", "NPM_AUTH", "GPG_PASSPHRASE", "MY_PRIVATE", "DB_PASSWD"]
)
def test_terminal_env_refuses_credential_names(xdg: dict[str, str], name: str) -> None:
    with pytest.raises(UsageError, match=f"{name} looks like a credential"):
        settings.load(env={**xdg, "KYROS_TERMINAL_ENV": name})


def test_terminal_env_refuses_a_key_given_as_a_name(xdg: dict[str, str]) -> None:
    for key in SENTINELS.values():
        with pytest.raises(UsageError, match="looks like a key, not a name") as info:
            settings.load(env={**xdg, "KYROS_TERMINAL_ENV": f"JAVA_HOME,{key}"})
        assert key not in info.value.message
    assert settings.load(env={**xdg, "KYROS_TERMINAL_ENV": "PATH_EXTRA,PATTERN"})


# --------------------------------------------------------------------------------------------
# a real daemon: /v1/config, its log, a terminal's environment, chunked bodies


@pytest.fixture(scope="module")
def sentinel_daemon() -> Iterator[tuple[Any, dict[str, str]]]:
    key = SENTINELS["prefixed"]
    bare = SENTINELS["random"]
    with xdg_dirs() as xdg:
        env = kyros_env(
            xdg,
            KYROS_LOG_LEVEL="DEBUG",
            KYROS_API_BASE=f"http://127.0.0.1:9/{bare}",
            KYROS_TRUSTED_PROJECTS=f"/nowhere/{key}",
            KYROS_ALLOWED_HOSTS=bare.lower(),
            KYROS_MODELS=json.dumps({"x": {"model": "openai/x", "api_base": f"http://h/{key}"}}),
            KYROS_TERMINAL_ENV="BUILD_OPTS,BUILD_FLAVOUR",
            BUILD_OPTS=f"--token={key}",
            BUILD_FLAVOUR="debug",
            OPENAI_API_KEY=key,
            GITHUB_PAT=bare,
        )
        d = start_daemon(env)
        try:
            yield d, env
        finally:
            d.stop()


def test_the_daemon_shows_logs_and_passes_on_no_key(
    sentinel_daemon: tuple[Any, dict[str, str]], tmp_path: Path
) -> None:
    d, _ = sentinel_daemon
    with d.client() as c:
        entries = c.config()
        t = c.create_terminal(
            {"command": ["/bin/sh", "-c", "env; echo flavour=$BUILD_FLAVOUR; echo DONE"]}
        )
        deadline = time.monotonic() + 20
        while "DONE" not in (logs := c.terminal_logs(t["id"])):
            assert time.monotonic() < deadline, logs
            time.sleep(0.1)
    shown = json.dumps(entries)
    assert "flavour=debug" in logs  # the variable without a key in it is inherited
    assert "BUILD_OPTS" not in logs  # the one whose value holds a key is not
    daemon_log = d.log.read_text()
    assert "does not inherit BUILD_OPTS" in daemon_log
    for key in SENTINELS.values():
        assert key not in shown
        assert key not in logs
        assert key.lower() not in shown
        assert key not in daemon_log
    assert "***" in shown


def test_an_oversized_chunked_body_gets_413(sentinel_daemon: tuple[Any, dict[str, str]]) -> None:
    d, _ = sentinel_daemon

    def chunks() -> Iterator[bytes]:
        yield b'{"goal": "'
        for _ in range(20):
            yield b"x" * 65536  # 1.25 MiB in all, over the 1 MiB limit, with no length
        yield b'", "model": "demo"}'

    with httpx.Client(
        transport=httpx.HTTPTransport(uds=str(d.socket)), base_url="http://kyros", timeout=20
    ) as c:
        r = c.post("/v1/runs/plan", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413, r.text
        assert r.json()["error"]["code"] == "payload_too_large"
        small = c.post("/v1/runs/plan", content=iter([b"{", b"}"]))
        assert small.status_code == 422  # a small chunked body still reaches the route
        assert c.get("/healthz").status_code == 200
        assert c.get("/v1/runs").json()["runs"] == []  # the refused run was not created
