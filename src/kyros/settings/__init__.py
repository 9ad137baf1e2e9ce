"""kyros's one typed settings object, and where each value came from.

Precedence, highest first: command-line flags > ``KYROS_*`` environment variables > the project's
``.kyros.toml`` (searched upward from the workspace; inert until the project is trusted) > the
user's ``config.toml`` > defaults. :func:`load` is the only reader of ``os.environ`` for settings.

:func:`load` gathers the values; the schema (:mod:`kyros.settings.model`, pydantic) checks them
all when :attr:`Loaded.settings` is first read. A client that only talks to a daemon reads the
few settings it needs through :class:`Loaded`'s own properties, each checked on its own, and
never builds the schema: that is ~100 ms of every command's and the console's start-up.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from kyros import paths as paths_mod
from kyros.errors import UsageError
from kyros.redaction import redact_shapes
from kyros.settings.checks import (
    DEFAULT_DETACH_KEY,
    DEFAULT_RECONNECT_SECONDS,
    MAX_RECONNECT_SECONDS,
    ROLES,
    detach_key_byte,
)

if TYPE_CHECKING:
    from kyros.settings.model import Settings

__all__ = [
    "REPO_FORBIDDEN",
    "ROLES",
    "RUN_KEYS",
    "SECRET_KEYS",
    "Loaded",
    "ProjectFile",
    "config_stamp",
    "detach_key_byte",
    "find_project_config",
    "load",
    "redact",
    "redact_url",
    "reread",
]

T = TypeVar("T")

#: Keys a repository's own `.kyros.toml` may never set, even once trusted: where requests go and
#: which credentials they carry are the user's decision (RELIABILITY S10).
REPO_FORBIDDEN = frozenset(
    {
        "api_base",
        "database_url",
        "redis_url",
        "daemon",
        "token",
        "plugins",
        # The catalogue names servers and keys; budgets are the user's money.
        "models",
        "roles",
        "critic_other_vendor",
        # A price of 0 (or free loopback) would lift every cap on a model.
        "prices",
        "free_loopback",
        "budget_run",
        "budget_agent",
        "budget_project",
        "budget_day",
        # A repository must not choose what of the user's environment its terminals see,
        # nor which names the daemon answers to.
        "terminal_env",
        "allowed_hosts",
    }
)

#: Settings a client sends with each run it starts when its own environment or a trusted
#: project file sets them: a daemon reads neither (ADR 0017).
RUN_KEYS = ("model", "api_base")

#: Keys whose values are secrets: printed as "***" everywhere.
SECRET_KEYS = frozenset({"token"})


@dataclass(frozen=True)
class ProjectFile:
    """A project's ``.kyros.toml`` and whether the user trusts it (only then is it applied)."""

    path: Path
    trusted: bool

    @property
    def hint(self) -> str:
        """What the user can do about it, in one line."""
        if self.trusted:
            return f"trusted: its settings apply to runs in {self.path.parent}"
        return (
            f"not trusted, so its settings are ignored; to apply them add "
            f'"{self.path.parent}" to trusted_projects in your config.toml'
        )


@dataclass(frozen=True)
class Loaded:
    """The gathered settings with the source of each value (``user config (…)``, ``env …``,
    ``flag``), the paths, and the provider keys found in the environment."""

    #: Every value gathered, by key, before the schema checks it (keys that are not settings
    #: are dropped then).
    raw: dict[str, Any] = field(default_factory=dict, repr=False)
    raw_sources: dict[str, str] = field(default_factory=dict)
    paths: paths_mod.Paths = field(default_factory=paths_mod.resolve)
    #: Provider credentials from the environment (``*_API_KEY``); never printed or logged.
    provider_keys: dict[str, str] = field(default_factory=dict, repr=False)
    #: The environment switches of the OS keyring lookup (``CI``, ``KYROS_KEYRING``).
    keyring_env: dict[str, str] = field(default_factory=dict)
    #: The workspace's ``.kyros.toml`` and its trust state (None: no workspace or no file).
    project: ProjectFile | None = None

    @cached_property
    def _checked(self) -> tuple[Settings, dict[str, str]]:
        from kyros.settings.model import validate

        return validate(self.raw, self.raw_sources)

    @property
    def settings(self) -> Settings:
        """Every setting, checked by the schema (``UsageError`` names each bad value)."""
        return self._checked[0]

    @property
    def sources(self) -> dict[str, str]:
        """Where each setting that is not a default came from."""
        return self._checked[1]

    # --- what clients read, without the schema ------------------------------------------

    def _light(self, key: str, default: T, check: Callable[[Any], T]) -> T:
        if "_checked" in self.__dict__:  # checked whole already
            value: T = getattr(self.settings, key)
            return value
        if self.raw.get(key) is None:
            return default
        try:
            return check(self.raw[key])
        except (TypeError, ValueError) as exc:
            raise UsageError(
                redact_shapes(f"invalid settings: {key} ({self.raw_sources.get(key, '?')}): {exc}")
            ) from None

    @property
    def daemon(self) -> str | None:
        """The ``daemon`` setting: the address clients talk to."""
        return self._light("daemon", None, _text)

    @property
    def token(self) -> str | None:
        """The ``token`` setting: the bearer token for a daemon over TCP."""
        return self._light("token", None, _text)

    @property
    def detach_key(self) -> str:
        """The ``detach_key`` setting (checked: a key :func:`detach_key_byte` understands)."""
        return self._light("detach_key", DEFAULT_DETACH_KEY, _detach_key)

    @property
    def reconnect_seconds(self) -> float:
        """The ``reconnect_seconds`` setting: how long a lost event stream is resumed."""
        return self._light("reconnect_seconds", DEFAULT_RECONNECT_SECONDS, _reconnect_seconds)

    def run_choices(self) -> dict[str, Any]:
        """What a run started from here carries (``{"model": …, "sources": {"model": "env
        KYROS_MODEL"}}``): each of :data:`RUN_KEYS` that this process's environment or the
        trusted project file sets. The daemon reads the user's config file itself."""
        choices: dict[str, Any] = {}
        sources: dict[str, str] = {}
        for key in RUN_KEYS:
            source = self.source_of(key)
            if source.startswith(("env ", "project config")):
                choices[key] = self._light(key, None, _text)
                sources[key] = source
        if choices:
            choices["sources"] = sources
        return choices

    def source_of(self, key: str) -> str:
        """Where ``key``'s value came from (``default`` when nothing set it)."""
        return self.raw_sources.get(key, "default")

    # --- the whole --------------------------------------------------------------------------

    def entries(self) -> list[dict[str, Any]]:
        """Every setting with its source, secrets redacted: what `kyros config show` prints."""
        settings = self.settings
        return [
            {
                "key": key,
                "value": redact(key, getattr(settings, key)),
                "source": self.source_of(key),
                "secret": key in SECRET_KEYS,
            }
            for key in type(settings).model_fields
        ]

    @property
    def database_url(self) -> str:
        """The store URL, defaulting to SQLite in the data dir."""
        return self.settings.database_url or f"sqlite+aiosqlite:///{self.paths.database}"


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected text, got {type(value).__name__}")
    return value


def _detach_key(value: Any) -> str:
    detach_key_byte(_text(value))
    return str(value)


def _reconnect_seconds(value: Any) -> float:
    if isinstance(value, bool):
        raise TypeError("expected a number of seconds")
    seconds = float(value)
    if not 0 <= seconds <= MAX_RECONNECT_SECONDS:
        raise ValueError(f"must be between 0 and {MAX_RECONNECT_SECONDS:.0f} seconds")
    return seconds


def redact(key: str, value: Any) -> Any:
    """Hide secrets: whole values for secret keys, passwords inside URLs, and in every other
    value whatever is shaped like a key (:func:`kyros.redaction.redact_shapes`) — a key pasted
    into the wrong field must not print either."""
    if value is None:
        return None
    if key in SECRET_KEYS:
        return "***"
    if hasattr(value, "model_dump"):  # a catalogue entry
        value = value.model_dump()
    if isinstance(value, dict):
        return {redact_shapes(str(k)): redact(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(key, v) for v in value]
    if isinstance(value, str):
        return redact_shapes(redact_url(value) if "://" in value else value)
    return value


def redact_url(url: str) -> str:
    """``postgresql://u:pw@h/db`` → ``postgresql://u:***@h/db``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from exc
    section = data.get("kyros", data)
    return dict(section) if isinstance(section, dict) else {}


def find_project_config(start: Path) -> Path | None:
    """The nearest ``.kyros.toml`` at or above ``start``."""
    start = start.resolve()
    for directory in (start, *start.parents):
        candidate = directory / ".kyros.toml"
        if candidate.is_file():
            return candidate
    return None


def _trusted(values: dict[str, Any]) -> set[str]:
    listed = values.get("trusted_projects", [])
    if isinstance(listed, str):  # KYROS_TRUSTED_PROJECTS=a,b before the schema splits it
        listed = listed.split(",")
    if not isinstance(listed, list):
        return set()
    return {str(Path(str(p).strip()).expanduser().resolve()) for p in listed if str(p).strip()}


def config_stamp(path: Path) -> tuple[int, int, int] | None:
    """What tells one version of a config file from the next (inode, size, modification time
    in ns), or None when there is no file: a running daemon compares it to re-read the file."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def reread(loaded: Loaded, *, check: bool = True) -> Loaded:
    """``loaded`` with the user's config file read again, as a running daemon does when the
    file changed. Values from the environment and flags stay: a running process's environment
    does not change. Raises ``UsageError`` (with ``check``) when the file is now invalid."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    config_file = loaded.paths.config_file
    for key, value in _read_toml(config_file).items():
        values[key], sources[key] = value, f"user config ({config_file})"
    for key, source in loaded.raw_sources.items():
        if source.startswith("env ") or source == "flag":
            values[key], sources[key] = loaded.raw[key], source
    fresh = Loaded(
        raw=values,
        raw_sources=sources,
        paths=loaded.paths,
        provider_keys=loaded.provider_keys,
        keyring_env=loaded.keyring_env,
    )
    if check:
        fresh.settings  # noqa: B018 - checks every value now
    return fresh


def load(
    overrides: dict[str, Any] | None = None,
    *,
    env: dict[str, str] | None = None,
    workspace: Path | None = None,
    check: bool = True,
) -> Loaded:
    """Gather the effective settings. ``overrides`` are flags (``None`` values are ignored).

    With ``check`` (the default) every value is checked now and a bad one raises
    ``UsageError``; without, they are checked when :attr:`Loaded.settings` is first read, and
    a client reads the few it needs through :class:`Loaded`'s properties.
    """
    env = dict(os.environ if env is None else env)
    paths = paths_mod.resolve(env)
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    project: ProjectFile | None = None

    for key, value in _read_toml(paths.config_file).items():
        values[key], sources[key] = value, f"user config ({paths.config_file})"

    if workspace is not None:
        found = find_project_config(workspace)
        if found is not None:
            # Trust is the user's alone: only their own config file grants it.
            project = ProjectFile(found, str(found.parent) in _trusted(values))
        if project is not None and project.trusted:
            for key, value in _read_toml(project.path).items():
                if key not in REPO_FORBIDDEN and key != "trusted_projects":
                    values[key], sources[key] = value, f"project config ({found})"

    for name, raw in env.items():
        key = name[len("KYROS_") :]
        # KYROS_<FIELD> in capitals; other KYROS_* switches are not settings (dropped later).
        if name.startswith("KYROS_") and key.isupper() and raw != "":
            values[key.lower()], sources[key.lower()] = raw, f"env {name}"

    for key, value in (overrides or {}).items():
        if value is not None:
            values[key], sources[key] = value, "flag"

    loaded = Loaded(
        raw=values,
        raw_sources=sources,
        paths=paths,
        provider_keys={k: v for k, v in env.items() if k.endswith("_API_KEY") and v},
        keyring_env={k: env[k] for k in ("CI", "KYROS_KEYRING") if env.get(k)},
        project=project,
    )
    if check:
        loaded.settings  # noqa: B018 - checks every value now
    return loaded
