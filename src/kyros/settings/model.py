"""The settings schema (pydantic): every setting's type, bounds, default and help, and the
validation of what :func:`kyros.settings.load` gathered.

Imported only when the whole settings are needed (the daemon, `kyros config show`): building
these models costs a client ~100 ms of its start-up, and a client needs four settings.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from kyros.errors import UsageError
from kyros.hosts import MalformedHost, canonical_name
from kyros.redaction import looks_like_secret, redact_shapes
from kyros.settings.checks import (
    DEFAULT_DETACH_KEY,
    DEFAULT_RECONNECT_SECONDS,
    MAX_RECONNECT_SECONDS,
    ROLES,
    check_terminal_env,
    detach_key_byte,
)


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

    @field_validator("key")
    @classmethod
    def _a_provider_not_a_key(cls, value: str | None) -> str | None:
        return not_a_key(
            value,
            "names the provider whose stored key is sent (e.g. 'openai', or 'none'); store "
            "the key itself with `kyros auth set-key PROVIDER` or in PROVIDER_API_KEY",
        )

    @field_validator("model")
    @classmethod
    def _a_model_id(cls, value: str) -> str:
        return not_a_key(value, MODEL_WANTED) or value


class PriceSpec(BaseModel):
    """A price set by hand (``[prices."ID-OR-URL"]``): for a model id or alias, or for every
    model behind one ``api_base``. USD per 1M tokens; ``0`` declares a free server."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    price_in: float = Field(ge=0, description="USD per 1M input tokens.")
    price_out: float = Field(ge=0, description="USD per 1M output tokens.")
    price_cached: float | None = Field(
        default=None, ge=0, description="USD per 1M cached input tokens (default: price_in)."
    )


class RoleSpec(BaseModel):
    """Which model a role (plan, implement, critic, summarize) uses, and what it falls back to."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str | None = Field(default=None, description="Alias or litellm id.")
    fallbacks: list[str] = Field(
        default_factory=list, description="Tried in order when the model fails or cools down."
    )

    @field_validator("model")
    @classmethod
    def _a_model_name(cls, value: str | None) -> str | None:
        return not_a_key(value, MODEL_WANTED)

    @field_validator("fallbacks")
    @classmethod
    def _model_names(cls, values: list[str]) -> list[str]:
        return [not_a_key(v, MODEL_WANTED) or v for v in values]


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
    prices: dict[str, PriceSpec] = Field(
        default_factory=dict,
        description="Prices set by hand, keyed by model (alias or litellm id) or by api_base "
        'URL: prices."openai/x" = { price_in = 0.5, price_out = 1.5 } (USD per 1M tokens).',
    )
    free_loopback: bool = Field(
        default=True,
        description="Models on a loopback api_base (127.0.0.0/8, ::1, localhost) whose price "
        "is otherwise unknown count as free (a local server); false: unknown.",
    )
    roles: dict[str, RoleSpec] = Field(
        default_factory=dict,
        description="Per role (plan, implement, critic, summarize): model and fallbacks.",
    )
    critic_other_vendor: bool = Field(
        default=True,
        description="A critic whose model is of the reviewed change's vendor reviews with "
        "another vendor's model instead, when one is configured (said in the run's events).",
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
        default=30.0,
        gt=0,
        le=3600,
        description="Seconds to reach a provider and send it the request.",
    )
    deadline_first_token: float = Field(
        default=120.0,
        gt=0,
        le=3600,
        description="Seconds from the request sent to the answer's first token.",
    )
    deadline_between_chunks: float = Field(
        default=60.0, gt=0, le=3600, description="Longest silence allowed mid-answer."
    )
    deadline_total: float = Field(
        default=900.0,
        gt=0,
        le=86400,
        description="Seconds one model call may take in all, its retries and fallbacks included.",
    )
    fallback_rounds: int = Field(
        default=2,
        ge=1,
        le=10,
        description="Times one model call may try each model of its chain before it fails.",
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
    worktree_retention_days: float = Field(
        default=7.0,
        ge=0,
        le=3650,
        description="Days a finished run's worktree is kept before the daemon removes it "
        "(its diff stays); 0 keeps them until `kyros runs clean`.",
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
    shutdown_grace_seconds: float = Field(
        default=10.0,
        ge=0,
        le=3600,
        description="On stop, how long running jobs and their commands get to finish before "
        "they are checkpointed and released to the queue.",
    )
    node_role: Literal["all", "api", "worker"] = Field(
        default="all",
        description="What this daemon does in a cluster (docs/cluster.md): all (serve clients "
        "and run jobs), api (serve clients, run no jobs) or worker (run jobs; serves only "
        "/healthz, /readyz and the registry). `kyros daemon serve --role`.",
    )
    node_id: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$",
        description="This daemon's id in the service registry; default: the machine's name "
        "and a suffix kept in the state dir. Unique among the nodes of one database.",
    )
    node_url: str | None = Field(
        default=None,
        description="The address other nodes and clients reach this daemon at, as shown in "
        "the registry; default: its TCP listener (http://HOST:PORT), else its Unix socket.",
    )
    node_heartbeat_seconds: float = Field(
        default=5.0, gt=0, le=600, description="How often a node renews its registry lease."
    )
    node_expiry_seconds: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="A node whose registry lease is this old by the database's clock is "
        "marked down by any live node's reaper (every reaper_seconds).",
    )
    reconnect_seconds: float = Field(
        default=DEFAULT_RECONNECT_SECONDS,
        ge=0,
        le=MAX_RECONNECT_SECONDS,
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
        default=DEFAULT_DETACH_KEY,
        description="Key that detaches `kyros term attach`: ctrl-LETTER, ctrl-\\, ctrl-] ….",
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Extra host names and IP addresses a TCP daemon answers to (its clients' "
        "Host); localhost, loopback, the listen address and this machine's name always are.",
    )
    log_level: str = Field(default="INFO", description="Daemon log level.")
    plugins: list[str] = Field(
        default_factory=list, description="Python modules whose register() adds job kinds."
    )
    trusted_projects: list[str] = Field(
        default_factory=list, description="Projects whose .kyros.toml is applied."
    )

    @model_validator(mode="after")
    def _expiry_outlasts_heartbeats(self) -> Settings:
        if self.node_expiry_seconds <= self.node_heartbeat_seconds:
            raise ValueError(
                f"node_expiry_seconds ({self.node_expiry_seconds:g}) must exceed "
                f"node_heartbeat_seconds ({self.node_heartbeat_seconds:g}): a live node would "
                "expire between two heartbeats"
            )
        return self

    @field_validator("detach_key")
    @classmethod
    def _a_detach_key(cls, value: str) -> str:
        detach_key_byte(value)
        return value

    @field_validator("terminal_env")
    @classmethod
    def _no_secrets_in_terminals(cls, names: list[str]) -> list[str]:
        return check_terminal_env(names)

    @field_validator("model")
    @classmethod
    def _a_default_model(cls, value: str | None) -> str | None:
        return not_a_key(value, MODEL_WANTED)

    @field_validator("allowed_hosts")
    @classmethod
    def _host_names(cls, names: list[str]) -> list[str]:
        try:
            return [canonical_name(name) for name in names]
        except MalformedHost as exc:
            raise ValueError(f"{exc} (give names or addresses without a port)") from None

    @field_validator("roles")
    @classmethod
    def _known_roles(cls, roles: dict[str, RoleSpec]) -> dict[str, RoleSpec]:
        unknown = sorted(set(roles) - set(ROLES))
        if unknown:
            raise ValueError(f"unknown role(s) {', '.join(unknown)}; roles: {', '.join(ROLES)}")
        return roles


MODEL_WANTED = "wants a model alias or litellm id (e.g. openai/gpt-4.1-mini)"


def not_a_key(value: str | None, wanted: str) -> str | None:
    """``value``, unless it looks like a key pasted where a name is expected: then a
    ``ValueError`` saying what the field wants (never the value)."""
    if value is not None and looks_like_secret(value):
        raise ValueError(f"this looks like a key, not a name: the field {wanted}")
    return value


def validate(raw: dict[str, Any], raw_sources: dict[str, str]) -> tuple[Settings, dict[str, str]]:
    """The :class:`Settings` of the values gathered from files, the environment and flags, and
    the source of each; keys that are not settings are ignored. Raises ``UsageError`` naming
    each bad value's source."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for key, value in raw.items():
        if key not in Settings.model_fields:
            continue
        source = raw_sources[key]
        if source.startswith("env ") and isinstance(value, str):
            value = _coerce_env(key, value)
        values[key], sources[key] = value, source
    try:
        settings = Settings(**values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])} ({sources.get(str(err['loc'][0]), '?')}): "
            f"{err['msg']}"
            if err["loc"]
            else str(err["msg"])  # a check across settings (model_validator) names them
            for err in exc.errors()
        )
        # Messages may quote what was given; a key given in the wrong place is not printed.
        raise UsageError(redact_shapes(f"invalid settings: {problems}")) from None
    return settings, sources


def _coerce_env(key: str, raw: str) -> Any:
    annotation = Settings.model_fields[key].annotation
    if annotation == list[str]:
        return [item.strip() for item in raw.split(",") if item.strip()]
    if key in ("models", "roles", "prices"):
        try:
            return json.loads(raw)  # tables in the environment: KYROS_MODELS='{"fast": {...}}'
        except json.JSONDecodeError as exc:
            raise UsageError(f"KYROS_{key.upper()} is not valid JSON: {exc}") from None
    return raw
