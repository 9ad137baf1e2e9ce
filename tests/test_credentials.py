"""Provider keys: env > OS keyring > own 0600 file, keyring probing with a timeout, and
`kyros auth` never showing key material (real files, real CLI processes)."""

from __future__ import annotations

import json
import os
import secrets
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keyring
import pytest
from keyring.backend import KeyringBackend
from keyring.backends import chainer, fail, null
from keyring.errors import KeyringLocked, PasswordDeleteError

from kyros import paths
from kyros.credentials import (
    KEYLESS,
    PROVIDER_KEYS,
    Credentials,
    env_var_for,
    validate_key,
    validate_provider,
)
from kyros.errors import UsageError
from tests.conftest import kyros_env, run_cli

# -- keyring backends of the test ------------------------------------------------------------------
# A negative priority keeps keyring's own auto-detection (and ChainerBackend) from ever picking
# them; tests install them explicitly with keyring.set_keyring() or PYTHON_KEYRING_BACKEND.


class MemoryKeyring(KeyringBackend):
    """An OS keyring that lives in a dict."""

    priority = -5

    def __init__(self) -> None:
        super().__init__()
        self.store: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.store.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.store[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if self.store.pop((service, username), None) is None:
            raise PasswordDeleteError(username)


class HangingKeyring(KeyringBackend):
    """A locked desktop keyring waiting on an unlock prompt nobody answers."""

    priority = -5

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def get_password(self, service: str, username: str) -> str | None:
        self.release.wait(30)
        return None

    def set_password(self, service: str, username: str, password: str) -> None:
        self.release.wait(30)

    def delete_password(self, service: str, username: str) -> None:
        self.release.wait(30)


class LockedKeyring(KeyringBackend):
    """A keyring that refuses every call."""

    priority = -5

    def get_password(self, service: str, username: str) -> str | None:
        raise KeyringLocked("locked")

    def set_password(self, service: str, username: str, password: str) -> None:
        raise KeyringLocked("locked")

    def delete_password(self, service: str, username: str) -> None:
        raise KeyringLocked("locked")


class PlaintextAltKeyring(MemoryKeyring):
    """Looks like a keyrings.alt backend (plaintext files)."""


PlaintextAltKeyring.__module__ = "keyrings.alt.file"


class FileKeyring(KeyringBackend):
    """An OS keyring for CLI subprocesses (PYTHON_KEYRING_BACKEND): a JSON file named by
    KYROS_TEST_KEYRING, so the test can look inside."""

    priority = -5

    @property
    def _path(self) -> Path:
        return Path(os.environ["KYROS_TEST_KEYRING"])

    def _load(self) -> dict[str, str]:
        try:
            return dict(json.loads(self._path.read_text()))
        except FileNotFoundError:
            return {}

    def get_password(self, service: str, username: str) -> str | None:
        return self._load().get(f"{service}/{username}")

    def set_password(self, service: str, username: str, password: str) -> None:
        data = self._load()
        data[f"{service}/{username}"] = password
        self._path.write_text(json.dumps(data))

    def delete_password(self, service: str, username: str) -> None:
        data = self._load()
        if data.pop(f"{service}/{username}", None) is None:
            raise PasswordDeleteError(username)
        self._path.write_text(json.dumps(data))


# -- fixtures --------------------------------------------------------------------------------------


def sentinel() -> str:
    return f"sk-SENTINEL{secrets.token_hex(12)}"


@pytest.fixture
def kpaths(xdg: dict[str, str]) -> paths.Paths:
    return paths.resolve(xdg)


@pytest.fixture
def use_keyring() -> Iterator[Any]:
    """Install a keyring backend for this test; the previous one comes back after."""
    previous = keyring.get_keyring()

    def install(backend: KeyringBackend) -> KeyringBackend:
        keyring.set_keyring(backend)
        return backend

    try:
        yield install
    finally:
        keyring.set_keyring(previous)


@pytest.fixture
def memory(use_keyring: Any) -> MemoryKeyring:
    backend: MemoryKeyring = use_keyring(MemoryKeyring())
    return backend


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def cli_env(xdg: dict[str, str], **extra: str) -> dict[str, str]:
    """A CLI environment whose keyring is chosen by the test, never the developer's own."""
    env = kyros_env(xdg)
    for name in ("CI", "PYTHON_KEYRING_BACKEND", "KYROS_TEST_KEYRING"):
        env.pop(name, None)
    env.update(extra)
    return env


# -- names and validation --------------------------------------------------------------------------


def test_provider_tables_moved_and_still_reachable_from_models() -> None:
    from kyros.core.ai import models

    assert models.PROVIDER_KEYS is PROVIDER_KEYS
    assert models.KEYLESS is KEYLESS
    assert PROVIDER_KEYS["together_ai"] == "TOGETHERAI_API_KEY" and len(PROVIDER_KEYS) == 9


@pytest.mark.parametrize(
    "name",
    ["", "a", "A", "OpenAI", "1abc", "_x", "open-ai", "open ai", "../etc", "x" * 33, "é_provider"],
)
def test_bad_provider_names_are_refused(name: str) -> None:
    with pytest.raises(UsageError, match="invalid provider name"):
        validate_provider(name)


def test_custom_provider_env_var() -> None:
    assert env_var_for("together_ai") == "TOGETHERAI_API_KEY"
    assert env_var_for("my_llm2") == "MY_LLM2_API_KEY"
    assert validate_provider("x" * 32) == "x" * 32


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("", "empty"),
        ("\n", "empty"),
        ("sk-abc\0def", "NUL"),
        ("sk-abc\ndef", "line break"),
        ("sk-abc\n\n", "line break"),
        ("sk-abc def", "whitespace"),
        ("\tsk-abc", "whitespace"),
        ("sk-\x1b[0mabc", "control"),
        ("sk-\u200babc", "invisible"),
        ("x" * 4097, "longer than 4096"),
    ],
)
def test_bad_keys_are_refused_without_echoing_them(key: str, why: str) -> None:
    with pytest.raises(UsageError, match=why) as info:
        validate_key(key)
    if len(key.strip()) > 2:
        assert key.strip() not in info.value.message


def test_one_trailing_newline_is_stripped() -> None:
    assert validate_key("sk-abc\n") == "sk-abc"
    assert validate_key("sk-abc\r\n") == "sk-abc"
    assert validate_key("x" * 4096 + "\n") == "x" * 4096


# -- precedence and storage ------------------------------------------------------------------------


def test_precedence_env_over_keyring_over_file(kpaths: paths.Paths, memory: MemoryKeyring) -> None:
    file_key, keyring_key, env_key = sentinel(), sentinel(), sentinel()
    assert Credentials(kpaths, {"KYROS_KEYRING": "off"}).set("openai", file_key).where == "file"
    memory.set_password("kyros", "openai", keyring_key)

    c = Credentials(kpaths, {"OPENAI_API_KEY": env_key})
    assert (c.get("openai"), c.source("openai")) == (env_key, "env OPENAI_API_KEY")
    assert c.provider_keys()["OPENAI_API_KEY"] == env_key

    c = Credentials(kpaths, {})
    assert (c.get("openai"), c.source("openai")) == (keyring_key, "keyring")
    assert c.provider_keys() == {"OPENAI_API_KEY": keyring_key}

    memory.delete_password("kyros", "openai")
    c = Credentials(kpaths, {})
    assert (c.get("openai"), c.source("openai")) == (file_key, f"file {kpaths.provider_keys_file}")
    assert c.provider_keys() == {"OPENAI_API_KEY": file_key}
    assert c.get("anthropic") is None and c.source("anthropic") is None


def test_set_uses_a_usable_keyring_and_leaves_no_file(
    kpaths: paths.Paths, memory: MemoryKeyring
) -> None:
    key = sentinel()
    c = Credentials(kpaths, {})
    result = c.set("anthropic", key + "\n")
    assert (result.where, result.path, result.warning) == ("keyring", None, None)
    assert memory.store[("kyros", "anthropic")] == key
    assert not kpaths.provider_keys_file.exists()
    row = next(e for e in c.entries() if e["provider"] == "anthropic")
    assert row == {
        "provider": "anthropic",
        "env_var": "ANTHROPIC_API_KEY",
        "source": "keyring",
        "stored_in": ["keyring"],
    }
    assert c.remove("anthropic") == ["keyring"]
    assert ("kyros", "anthropic") not in memory.store
    assert c.get("anthropic") is None


def test_custom_provider_in_the_keyring_is_listed(
    kpaths: paths.Paths, memory: MemoryKeyring
) -> None:
    key = sentinel()
    Credentials(kpaths, {}).set("my_llm", key)
    c = Credentials(kpaths, {})  # a new process: only the keyring knows about my_llm
    assert {"provider": "my_llm", "env_var": "MY_LLM_API_KEY", "source": "keyring"}.items() <= (
        next(e for e in c.entries() if e["provider"] == "my_llm").items()
    )
    assert c.provider_keys() == {"MY_LLM_API_KEY": key}
    assert c.remove("my_llm") == ["keyring"]
    assert memory.store == {}  # the index entry goes when its last provider goes


def test_storing_in_the_keyring_removes_the_file_copy(
    kpaths: paths.Paths, memory: MemoryKeyring
) -> None:
    old, new = sentinel(), sentinel()
    Credentials(kpaths, {"CI": "true"}).set("openai", old)
    assert kpaths.provider_keys_file.exists()
    assert Credentials(kpaths, {}).set("openai", new).where == "keyring"
    assert not kpaths.provider_keys_file.exists()  # no stale plaintext copy stays behind
    assert Credentials(kpaths, {}).get("openai") == new


@pytest.mark.parametrize(
    ("env", "why"), [({"CI": "1"}, "CI is set"), ({"KYROS_KEYRING": "off"}, "KYROS_KEYRING=off")]
)
def test_ci_or_off_choose_the_file(
    kpaths: paths.Paths, memory: MemoryKeyring, env: dict[str, str], why: str
) -> None:
    key = sentinel()
    result = Credentials(kpaths, env).set("openai", key)
    assert (result.where, result.path) == ("file", kpaths.provider_keys_file)
    assert (
        result.warning
        and why in result.warning
        and str(kpaths.provider_keys_file) in (result.warning)
    )
    assert "\n" not in result.warning and key not in result.warning
    assert memory.store == {}


def test_file_is_private_and_versioned(kpaths: paths.Paths, memory: MemoryKeyring) -> None:
    key = sentinel()
    Credentials(kpaths, {"CI": "1"}).set("openai", key)
    f = kpaths.provider_keys_file
    assert mode(f) == 0o600 and mode(f.parent) == 0o700
    assert json.loads(f.read_text()) == {"version": 1, "keys": {"openai": key}}
    assert Credentials(kpaths, {"CI": "1"}).remove("openai") == [f"file {f}"]
    assert not f.exists()


@pytest.mark.parametrize("bad_mode", [0o644, 0o640, 0o604])
def test_file_readable_by_others_is_refused(kpaths: paths.Paths, bad_mode: int) -> None:
    key = sentinel()
    Credentials(kpaths, {"CI": "1"}).set("openai", key)
    kpaths.provider_keys_file.chmod(bad_mode)
    c = Credentials(kpaths, {"CI": "1"})
    with pytest.raises(UsageError, match="chmod 600") as info:
        c.get("openai")
    assert key not in info.value.message
    with pytest.raises(UsageError, match="chmod 600"):
        c.provider_keys()


def test_corrupt_file_is_reported_without_its_content(kpaths: paths.Paths) -> None:
    f = kpaths.provider_keys_file
    f.parent.mkdir(parents=True, mode=0o700)
    f.write_text('{"version": 1, "keys": {"openai": "sk-SENTINELbroken')
    f.chmod(0o600)
    with pytest.raises(UsageError, match="not valid JSON") as info:
        Credentials(kpaths, {"CI": "1"}).get("openai")
    assert "SENTINEL" not in info.value.message


def test_provider_keys_sees_a_file_change_at_once(kpaths: paths.Paths) -> None:
    first, second = sentinel(), sentinel()
    assert len(first) == len(second)  # same size: the change must still be noticed
    daemon = Credentials(kpaths, {"CI": "1", "GROQ_API_KEY": "from-env"})
    assert daemon.provider_keys() == {"GROQ_API_KEY": "from-env"}
    Credentials(kpaths, {"CI": "1"}).set("openai", first)
    assert daemon.provider_keys() == {"GROQ_API_KEY": "from-env", "OPENAI_API_KEY": first}
    Credentials(kpaths, {"CI": "1"}).set("openai", second)
    assert daemon.provider_keys()["OPENAI_API_KEY"] == second
    Credentials(kpaths, {"CI": "1"}).remove("openai")
    assert daemon.provider_keys() == {"GROQ_API_KEY": "from-env"}


def test_keyring_answers_are_cached_for_30_seconds(
    kpaths: paths.Paths, memory: MemoryKeyring
) -> None:
    now = [1000.0]
    daemon = Credentials(kpaths, {}, clock=lambda: now[0])
    assert daemon.provider_keys() == {}
    key = sentinel()
    memory.set_password("kyros", "openai", key)  # `kyros auth set-key` in another process
    now[0] += 29
    assert daemon.provider_keys() == {}
    now[0] += 2
    assert daemon.provider_keys() == {"OPENAI_API_KEY": key}


def test_entries_never_hold_key_material(kpaths: paths.Paths, memory: MemoryKeyring) -> None:
    keys = [sentinel() for _ in range(3)]
    Credentials(kpaths, {"CI": "1"}).set("openai", keys[0])
    Credentials(kpaths, {"CI": "1"}).set("custom_one", keys[1])
    c = Credentials(kpaths, {"GEMINI_API_KEY": keys[2]})
    c.set("mistral", sentinel())
    text = json.dumps(c.entries())
    assert "SENTINEL" not in text
    rows = {e["provider"]: e for e in c.entries()}
    assert rows["openai"]["stored_in"] == ["file"]
    assert rows["custom_one"]["env_var"] == "CUSTOM_ONE_API_KEY"
    assert rows["gemini"]["source"] == "env GEMINI_API_KEY" and rows["gemini"]["stored_in"] == []
    assert rows["mistral"]["source"] == "keyring"
    assert rows["xai"]["source"] is None


# -- unusable keyrings -----------------------------------------------------------------------------


def test_a_hanging_keyring_is_given_up_within_the_timeout(
    kpaths: paths.Paths, use_keyring: Any
) -> None:
    backend = use_keyring(HangingKeyring())
    try:
        c = Credentials(kpaths, {}, keyring_timeout=0.3)
        start = time.monotonic()
        result = c.set("openai", sentinel())
        assert time.monotonic() - start < 2.0
        assert result.where == "file"
        assert result.warning and "did not answer within 0.3 s" in result.warning
        start = time.monotonic()
        assert c.get("openai") and c.entries() and c.provider_keys()
        assert time.monotonic() - start < 0.2  # probed once: no second wait
    finally:
        backend.release.set()  # let the abandoned threads finish


def _empty_chainer(monkeypatch: pytest.MonkeyPatch) -> KeyringBackend:
    monkeypatch.setattr(keyring.backend, "_limit", lambda _backend: False)
    backend = chainer.ChainerBackend()
    assert list(backend.backends) == []
    return backend


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (lambda mp: fail.Keyring(), "no OS keyring backend"),
        (lambda mp: null.Keyring(), "null backend"),
        (lambda mp: LockedKeyring(), "KeyringLocked"),
        (lambda mp: PlaintextAltKeyring(), "plain file"),
        (_empty_chainer, "no OS keyring backend"),
    ],
    ids=["fail", "null", "locked", "keyrings.alt", "empty-chainer"],
)
def test_unusable_keyrings_fall_back_to_the_file(
    kpaths: paths.Paths, use_keyring: Any, monkeypatch: pytest.MonkeyPatch, make: Any, why: str
) -> None:
    backend = use_keyring(make(monkeypatch))
    key = sentinel()
    c = Credentials(kpaths, {})
    result = c.set("openai", key)
    assert result.where == "file" and result.warning and why in result.warning
    assert not c.keyring_status().usable
    assert c.get("openai") == key and c.source("openai") == f"file {kpaths.provider_keys_file}"
    if isinstance(backend, MemoryKeyring):
        assert backend.store == {}


def test_importing_credentials_does_not_import_keyring() -> None:
    code = "import sys, kyros.credentials, kyros.core.ai.models; print('keyring' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- the CLI, in real processes --------------------------------------------------------------------


def _keyring_unusable_here() -> bool:
    return not Credentials(paths.resolve({"HOME": "/nonexistent"}), {}).keyring_status().usable


@pytest.mark.parametrize(
    "extra",
    [
        {},  # this machine's own default: headless, no keyring
        {"CI": "1"},
        {"PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring"},
        {"PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"},
    ],
    ids=["default", "ci", "null", "fail"],
)
def test_cli_set_key_without_keyring_uses_the_file_with_one_warning(
    xdg: dict[str, str], extra: dict[str, str]
) -> None:
    if not extra and not _keyring_unusable_here():
        pytest.skip("this machine has a usable OS keyring; the test will not write to it")
    env = cli_env(xdg, **extra)
    key = sentinel()
    p = paths.resolve(env)
    r = run_cli(env, "auth", "set-key", "openai", input=key + "\n")
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("kyros: warning: no OS keyring was usable")
    assert str(p.provider_keys_file) in lines[0] and "0600" in lines[0]
    assert str(p.provider_keys_file) in r.stdout
    assert key not in r.stdout + r.stderr
    assert mode(p.provider_keys_file) == 0o600 and mode(p.provider_keys_file.parent) == 0o700
    assert json.loads(p.provider_keys_file.read_text())["keys"] == {"openai": key}

    for args in (("auth", "list"), ("auth", "list", "--json"), ("config", "show", "--json")):
        r = run_cli(env, *args)
        assert r.returncode == 0, r.stderr
        assert "SENTINEL" not in r.stdout + r.stderr, args
    listed = json.loads(run_cli(env, "auth", "list", "--json").stdout)
    row = next(e for e in listed["providers"] if e["provider"] == "openai")
    assert row["source"] == f"file {p.provider_keys_file}" and row["stored_in"] == ["file"]
    assert listed["keyring"]["usable"] is False and listed["keyring"]["reason"]


def test_cli_with_an_os_keyring(xdg: dict[str, str], tmp_path: Path) -> None:
    store = tmp_path / "os-keyring.json"
    env = cli_env(
        xdg,
        PYTHON_KEYRING_BACKEND="tests.test_credentials.FileKeyring",
        KYROS_TEST_KEYRING=str(store),
    )
    key = sentinel()
    r = run_cli(env, "auth", "set-key", "anthropic", "--stdin", input=key)
    assert r.returncode == 0, r.stderr
    assert "OS keyring" in r.stdout and r.stderr == ""
    assert json.loads(store.read_text()) == {"kyros/anthropic": key}
    assert not paths.resolve(env).provider_keys_file.exists()
    r = run_cli(env, "auth", "list", "--json")
    assert "SENTINEL" not in r.stdout + r.stderr
    doc = json.loads(r.stdout)
    assert doc["keyring"] == {
        "usable": True,
        "backend": "tests.test_credentials.FileKeyring",
        "reason": None,
    }
    row = next(e for e in doc["providers"] if e["provider"] == "anthropic")
    assert (row["source"], row["stored_in"]) == ("keyring", ["keyring"])
    r = run_cli(env, "auth", "rm-key", "anthropic")
    assert r.returncode == 0 and "OS keyring" in r.stdout, r.stderr
    assert json.loads(store.read_text()) == {}


def test_cli_env_key_is_used_but_never_shown_or_removed(xdg: dict[str, str]) -> None:
    key = sentinel()
    env = cli_env(xdg, CI="1", OPENAI_API_KEY=key)
    for args in (("auth", "list"), ("auth", "list", "--json"), ("config", "show", "--json")):
        r = run_cli(env, *args)
        assert r.returncode == 0, r.stderr
        assert "SENTINEL" not in r.stdout + r.stderr, args
    row = next(
        e
        for e in json.loads(run_cli(env, "auth", "list", "--json").stdout)["providers"]
        if e["provider"] == "openai"
    )
    assert row["source"] == "env OPENAI_API_KEY"
    r = run_cli(env, "auth", "rm-key", "openai")
    assert r.returncode == 2
    assert "cannot remove" in r.stderr and "OPENAI_API_KEY" in r.stderr
    assert "SENTINEL" not in r.stdout + r.stderr


def test_cli_rm_key(xdg: dict[str, str]) -> None:
    env = cli_env(xdg, CI="1")
    p = paths.resolve(env)
    assert run_cli(env, "auth", "set-key", "groq", input=sentinel()).returncode == 0
    assert run_cli(env, "auth", "set-key", "my_llm", input=sentinel()).returncode == 0
    r = run_cli(env, "auth", "rm-key", "groq")
    assert r.returncode == 0 and str(p.provider_keys_file) in r.stdout, r.stderr
    assert json.loads(p.provider_keys_file.read_text())["keys"].keys() == {"my_llm"}
    r = run_cli(env, "auth", "rm-key", "groq")
    assert r.returncode == 2 and "no stored key for groq" in r.stderr
    # Removed while the variable is set: done, with a note that the variable still provides one.
    env2 = {**env, "MY_LLM_API_KEY": "from-env"}
    r = run_cli(env2, "auth", "rm-key", "my_llm")
    assert r.returncode == 0 and "still set" in r.stderr
    assert not p.provider_keys_file.exists()


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (("Bad",), "sk-SENTINELabc", "invalid provider name"),
        (("open-ai",), "sk-SENTINELabc", "invalid provider name"),
        (("openai",), "", "the key is empty"),
        (("openai",), "\n", "the key is empty"),
        (("openai",), "sk-SENTINEL\0abc", "NUL"),
        (("openai",), "sk-SENTINEL\nabc\n", "line break"),
        (("openai",), "sk-SENTINEL abc", "whitespace"),
        (("openai",), "x" * 5000, "longer than 4096"),
    ],
)
def test_cli_set_key_rejects_bad_input(
    xdg: dict[str, str], args: tuple[str, ...], stdin: str, message: str
) -> None:
    env = cli_env(xdg, CI="1")
    r = run_cli(env, "auth", "set-key", *args, input=stdin)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert message in r.stderr
    assert "SENTINEL" not in r.stdout + r.stderr
    assert not paths.resolve(env).provider_keys_file.exists()


def test_cli_refuses_a_world_readable_file(xdg: dict[str, str]) -> None:
    env = cli_env(xdg, CI="1")
    assert run_cli(env, "auth", "set-key", "openai", input=sentinel()).returncode == 0
    f = paths.resolve(env).provider_keys_file
    f.chmod(0o644)
    for args in (("auth", "list"), ("auth", "set-key", "openai")):
        r = run_cli(env, *args, input=sentinel())
        assert r.returncode == 2, r.stderr
        assert f"chmod 600 {f}" in r.stderr and "SENTINEL" not in r.stdout + r.stderr
    assert mode(f) == 0o644  # refused, not silently fixed
