"""kyros's one typed settings object, and where each value came from.

Precedence, highest first: command-line flags > ``KYROS_*`` environment variables > the project's
``.kyros.toml`` (searched upward from the workspace; inert until the project is trusted) > the
user's ``config.toml`` > defaults. :func:`load` is the only reader of ``os.environ`` for settings.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from kyros import paths as paths_mod
from kyros.errors import UsageError

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
        "budget_run",
        "budget_agent",
        "budget_project",
        "budget_day",
        # A repository must not choose what of the user's environment its terminals see.
        "terminal_env",
    }
)

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
#: Variable names that carry credentials; ``terminal_env`` refuses them.
_SECRET_ENV = re.compile(
    r"^KYROS_|KEY|TOKEN|SECRET|PASSW|CREDENTIAL|^AWS_|^SSH_AUTH|^LD_|^PYTHON", re.IGNORECASE
)

#: Keys whose values are secrets: printed as "***" everywhere.
SECRET_KEYS = frozenset({"token"})


ROLES = ("plan", "implement", "critic", "summarize")


class ModelSpec(BaseModel):
    """One catalogue entry (``[models.ALIAS]`` in config.toml): a model under a short name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(description="litellm model id, e.g. openai/gpt-4.1-mini.")
    api_base: str | None = Field(default=None, description="Base URL of the server to call.")
    key: str | None = Field(
        default=None,
        description="Provider whose stored key to send (default: the model's provider); "
        "'none' for servers that need no key.",
    )
    context_window: int | None = Field(default=None, gt=0, description="Input tokens accepted.")
    max_output: int | None = Field(
        default=None, gt=0, description="Output tokens asked for at most (bounds a call's cost)."
    )
    price_in: float | None = Field(default=None, ge=0, description="USD per 1M input tokens.")
    price_out: float | None = Field(default=None, ge=0, description="USD per 1M output tokens.")
    price_cached: float | None = Field(
        default=None, ge=0, description="USD per 1M cached input tokens (default: price_in)."
    )
    tools: bool = Field(default=True, description="Supports function calling.")
    vision: bool = Field(default=False, description="Accepts images.")


class RoleSpec(BaseModel):
    """Which model a role (plan, implement, critic, summarize) uses, and what it falls back to."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str | None = Field(default=None, description="Alias or litellm id.")
    fallbacks: list[str] = Field(
        default_factory=list, description="Tried in order when the model fails or cools down."
    )


class Settings(BaseModel):
    """Effective configuration. Every field can be set as ``KYROS_<FIELD>`` or in config.toml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the store; default: SQLite in the user data dir. "
        "PostgreSQL: postgresql+asyncpg://user@host/db",
    )
    redis_url: str | None = Field(default=None, description="Redis for cross-daemon fan-out.")
    daemon: str | None = Field(
        default=None, description="Daemon to talk to: unix:///path.sock or http(s)://host:port."
    )
    token: str | None = Field(default=None, description="Bearer token for a daemon over TCP.")
    model: str | None = Field(
        default=None, description="Default model for runs (litellm id, or 'demo')."
    )
    api_base: str | None = Field(
        default=None, description="Base URL of an OpenAI-compatible server for the model."
    )
    models: dict[str, ModelSpec] = Field(
        default_factory=dict, description="Model catalogue: alias -> [models.ALIAS] table."
    )
    roles: dict[str, RoleSpec] = Field(
        default_factory=dict,
        description="Per role (plan, implement, critic, summarize): model and fallbacks.",
    )
    budget_run: float | None = Field(default=None, ge=0, description="USD cap per run.")
    budget_agent: float | None = Field(
        default=None, ge=0, description="USD cap per agent per UTC day."
    )
    budget_project: float | None = Field(
        default=None, ge=0, description="USD cap per project (workspace) per UTC day."
    )
    budget_day: float | None = Field(
        default=None, ge=0, description="USD cap on all spending per UTC day."
    )
    deadline_connect: float = Field(
        default=30.0, gt=0, le=3600, description="Seconds until a provider's response starts."
    )
    deadline_first_token: float = Field(
        default=120.0, gt=0, le=3600, description="Seconds from the response to its first token."
    )
    deadline_between_chunks: float = Field(
        default=60.0, gt=0, le=3600, description="Longest silence allowed mid-answer."
    )
    deadline_total: float = Field(
        default=900.0, gt=0, le=86400, description="Seconds one model call may take in all."
    )
    retry_after_max: float = Field(
        default=30.0,
        ge=0,
        le=3600,
        description="Longest Retry-After kyros waits for; longer ones fall back or fail fast.",
    )
    model_retries: int = Field(
        default=1, ge=0, le=10, description="Retries of one model before falling back."
    )
    cooldown_seconds: float = Field(
        default=60.0, ge=0, le=86400, description="How long a failing model is left alone."
    )
    workers: int = Field(
        default=16,
        ge=1,
        le=256,
        description="Jobs one daemon runs at once (runs mostly wait on models, so 16 is cheap).",
    )
    lease_seconds: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="How long a claimed job is owned without a heartbeat.",
    )
    heartbeat_seconds: float = Field(
        default=5.0, gt=0, le=600, description="How often running jobs renew their lease."
    )
    reaper_seconds: float = Field(
        default=5.0, gt=0, le=600, description="How often expired leases are re-queued."
    )
    poll_seconds: float = Field(
        default=1.0, gt=0, le=60, description="Queue poll interval for jobs other processes add."
    )
    max_attempts: int = Field(default=3, ge=1, le=100, description="Tries before a job fails.")
    max_stalls: int = Field(
        default=3, ge=1, le=100, description="Expired leases before a job is dead-lettered."
    )
    retry_base_seconds: float = Field(
        default=1.0, ge=0, le=600, description="First retry delay; doubles per attempt, jittered."
    )
    retry_max_seconds: float = Field(default=300.0, ge=0, description="Ceiling of a retry delay.")
    reconnect_seconds: float = Field(
        default=30.0,
        ge=0,
        le=3600,
        description="How long a client keeps resuming a lost event stream before giving up.",
    )
    terminal_scrollback: int = Field(
        default=2 * 1024 * 1024,
        ge=64 * 1024,
        le=256 * 1024 * 1024,
        description="Bytes of output each terminal keeps and replays on attach.",
    )
    terminal_env: list[str] = Field(
        default_factory=list,
        description="Extra variables of the daemon's environment its terminals inherit "
        "(names; keys, tokens and KYROS_* are refused).",
    )
    detach_key: str = Field(
        default="ctrl-\\",
        description="Key that detaches `kyros term attach`: ctrl-LETTER, ctrl-\\, ctrl-] ….",
    )
    log_level: str = Field(default="INFO", description="Daemon log level.")
    plugins: list[str] = Field(
        default_factory=list, description="Python modules whose register() adds job kinds."
    )
    trusted_projects: list[str] = Field(
        default_factory=list, description="Projects whose .kyros.toml is applied."
    )

    @field_validator("detach_key")
    @classmethod
    def _a_detach_key(cls, value: str) -> str:
        detach_key_byte(value)
        return value

    @field_validator("terminal_env")
    @classmethod
    def _no_secrets_in_terminals(cls, names: list[str]) -> list[str]:
        for name in names:
            if not _ENV_NAME.match(name):
                raise ValueError(f"{name!r} is not an environment variable name")
            if _SECRET_ENV.search(name):
                raise ValueError(
                    f"{name} looks like a credential: terminals never inherit keys or tokens"
                )
        return names

    @field_validator("roles")
    @classmethod
    def _known_roles(cls, roles: dict[str, RoleSpec]) -> dict[str, RoleSpec]:
        unknown = sorted(set(roles) - set(ROLES))
        if unknown:
            raise ValueError(f"unknown role(s) {', '.join(unknown)}; roles: {', '.join(ROLES)}")
        return roles


@dataclass(frozen=True)
class Loaded:
    """Settings together with the source of each value (``default``, ``user config`` …)."""

    settings: Settings
    sources: dict[str, str] = field(default_factory=dict)
    paths: paths_mod.Paths = field(default_factory=paths_mod.resolve)
    #: Provider credentials from the environment (``*_API_KEY``); never printed or logged.
    provider_keys: dict[str, str] = field(default_factory=dict, repr=False)
    #: The environment switches of the OS keyring lookup (``CI``, ``KYROS_KEYRING``).
    keyring_env: dict[str, str] = field(default_factory=dict)

    def entries(self) -> list[dict[str, Any]]:
        """Every setting with its source, secrets redacted: what `kyros config show` prints."""
        out = []
        for key in Settings.model_fields:
            value = getattr(self.settings, key)
            out.append(
                {
                    "key": key,
                    "value": redact(key, value),
                    "source": self.sources.get(key, "default"),
                    "secret": key in SECRET_KEYS,
                }
            )
        return out

    @property
    def database_url(self) -> str:
        """The store URL, defaulting to SQLite in the data dir."""
        return self.settings.database_url or f"sqlite+aiosqlite:///{self.paths.database}"


def redact(key: str, value: Any) -> Any:
    """Hide secrets: whole values for secret keys, passwords inside URLs."""
    if value is None:
        return None
    if key in SECRET_KEYS:
        return "***"
    if isinstance(value, BaseModel):
        value = value.model_dump()
    if isinstance(value, dict):
        return {k: redact(str(k), v) for k, v in value.items()}
    if isinstance(value, str) and "://" in value:
        return redact_url(value)
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


def detach_key_byte(value: str) -> bytes:
    """The byte a detach key sends: ``ctrl-\\``, ``ctrl-b``, ``^]`` … or one character.

    Raises ``ValueError`` for anything else.
    """
    text = value.strip().lower()
    if text.startswith(("ctrl-", "c-", "^")):
        char = text.split("-", 1)[-1] if "-" in text else text[1:]
        if len(char) == 1 and 0x40 <= ord(char.upper()) <= 0x5F:
            return bytes([ord(char.upper()) & 0x1F])
    if len(value) == 1:
        return value.encode()
    raise ValueError(f"{value!r} is not a key: use ctrl-X (for example ctrl-\\ or ctrl-b)")


def _coerce_env(key: str, raw: str) -> Any:
    annotation = Settings.model_fields[key].annotation
    if annotation == list[str]:
        return [item.strip() for item in raw.split(",") if item.strip()]
    if key in ("models", "roles"):
        try:
            return json.loads(raw)  # tables in the environment: KYROS_MODELS='{"fast": {...}}'
        except json.JSONDecodeError as exc:
            raise UsageError(f"KYROS_{key.upper()} is not valid JSON: {exc}") from None
    return raw


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


def load(
    overrides: dict[str, Any] | None = None,
    *,
    env: dict[str, str] | None = None,
    workspace: Path | None = None,
) -> Loaded:
    """Build the effective settings. ``overrides`` are flags (``None`` values are ignored)."""
    env = dict(os.environ if env is None else env)
    paths = paths_mod.resolve(env)
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}

    user = _read_toml(paths.config_file)
    for key, value in user.items():
        if key in Settings.model_fields:
            values[key], sources[key] = value, f"user config ({paths.config_file})"

    if workspace is not None:
        project_file = find_project_config(workspace)
        trusted = {str(Path(p).resolve()) for p in values.get("trusted_projects", [])}
        if project_file is not None and str(project_file.parent) in trusted:
            for key, value in _read_toml(project_file).items():
                if key in Settings.model_fields and key not in REPO_FORBIDDEN:
                    values[key], sources[key] = value, f"project config ({project_file})"

    for key in Settings.model_fields:
        raw = env.get(f"KYROS_{key.upper()}")
        if raw is not None and raw != "":
            values[key], sources[key] = _coerce_env(key, raw), f"env KYROS_{key.upper()}"

    for key, value in (overrides or {}).items():
        if value is not None:
            values[key], sources[key] = value, "flag"

    try:
        settings = Settings(**values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])} ({sources.get(str(err['loc'][0]), '?')}): "
            f"{err['msg']}"
            for err in exc.errors()
        )
        raise UsageError(f"invalid settings: {problems}") from None
    provider_keys = {k: v for k, v in env.items() if k.endswith("_API_KEY") and v}
    keyring_env = {k: env[k] for k in ("CI", "KYROS_KEYRING") if env.get(k)}
    return Loaded(
        settings=settings,
        sources=sources,
        paths=paths,
        provider_keys=provider_keys,
        keyring_env=keyring_env,
    )
