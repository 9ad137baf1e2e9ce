"""Wire schemas shared by the daemon and its clients (API version :data:`kyros.API_VERSION`).

Strings that cross the wire are validated here once: no NUL bytes, no lone surrogates, and a
size bound on every free-text field, so bad input is a 422 at the edge and never reaches a store.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

# They live apart so that clients which only ask "has the run ended?" need no pydantic.
from kyros.statuses import JobStatus, RunStatus

#: The longest goal a run accepts. Goals are instructions, not documents; 64 KiB is ~16k tokens.
MAX_GOAL_CHARS = 64 * 1024
MAX_PATH_CHARS = 4096
MAX_NAME_CHARS = 256


def _clean_text(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL bytes")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates from JSON "\ud800"
        raise ValueError("must be valid Unicode (no lone surrogates)") from exc
    return value


CleanStr = Annotated[str, AfterValidator(_clean_text)]
Goal = Annotated[CleanStr, Field(min_length=1, max_length=MAX_GOAL_CHARS)]
PathStr = Annotated[CleanStr, Field(min_length=1, max_length=MAX_PATH_CHARS)]
Name = Annotated[CleanStr, Field(min_length=1, max_length=MAX_NAME_CHARS)]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- plans -------------------------------------------------------------------------------------


class PlanStep(BaseModel):
    """One step of a plan."""

    model_config = ConfigDict(extra="ignore")
    title: str = Field(min_length=1, max_length=300)
    detail: str = Field(default="", max_length=20_000)
    files: list[str] = Field(default_factory=list)
    tests: list[str] = Field(default_factory=list)


class Plan(BaseModel):
    """The structured output of a plan run."""

    model_config = ConfigDict(extra="ignore")
    summary: str = Field(min_length=1, max_length=20_000)
    steps: list[PlanStep] = Field(min_length=1, max_length=100)
    risks: list[str] = Field(default_factory=list)


# --- runs ----------------------------------------------------------------------------------------


#: The largest diff a critic run accepts inline (the request body cap is 1 MiB).
MAX_DIFF_CHARS = 900 * 1024
RunRef = Annotated[CleanStr, Field(min_length=1, max_length=64)]
Stage = Literal["plan", "implement", "critic"]


class RunChoices(_Wire):
    """Settings the client resolved from its own environment or a trusted project file, sent
    with the run because the daemon reads neither (ADR 0017). For this run they stand where
    the daemon's ``model`` and ``api_base`` settings would."""

    model: Name | None = None
    api_base: Annotated[CleanStr, Field(max_length=2048)] | None = None
    #: Where the client found each (``env KYROS_MODEL``, ``project config (…)``), for the record.
    sources: dict[Name, Annotated[CleanStr, Field(max_length=MAX_PATH_CHARS + 64)]] = Field(
        default_factory=dict, max_length=8
    )


class RunCreate(_Wire):
    """Body of ``POST /v1/runs/{kind}``. Kind-specific fields are refused by other kinds."""

    goal: Goal
    workspace: PathStr
    model: Name | None = None
    api_base: Annotated[CleanStr, Field(max_length=2048)] | None = None
    agent: Name | None = None
    #: implement: follow this plan run's plan.
    plan_run: RunRef | None = None
    #: critic: what to review — a run's diff, a diff given inline, or a git range ``A..B``.
    target_run: RunRef | None = None
    diff: Annotated[CleanStr, Field(max_length=MAX_DIFF_CHARS)] | None = None
    range: Annotated[CleanStr, Field(max_length=512)] | None = None
    #: pipeline: stop after this stage.
    until: Stage | None = None
    #: Continue the conversation of this run (its thread) instead of starting a new one.
    continue_run: RunRef | None = None
    #: A spending cap for this run in USD, checked before every model call.
    budget: Annotated[float, Field(ge=0, le=1_000_000)] | None = None
    #: The client's own settings for this run (see :class:`RunChoices`).
    settings: RunChoices | None = None


class Approval(_Wire):
    """Body of ``POST /v1/runs/{id}/approve``: the human's answer to the pending action."""

    approve: bool
    #: Also approve every later action of the same class (write / command) in this run.
    always: bool = False
    reason: Annotated[CleanStr, Field(max_length=4096)] | None = None


class Run(BaseModel):
    id: str
    #: plan, implement, critic, pipeline, or a kind a plugin added.
    kind: str
    status: RunStatus
    goal: str
    workspace: str
    agent: str | None = None
    model: str | None = None
    api_base: str | None = None
    output: dict[str, Any] | None = None
    error: str | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    cost: float = 0.0
    parent_id: str | None = None
    thread_id: str | None = None
    last_seq: int = 0
    params: dict[str, Any] | None = None
    pending: dict[str, Any] | None = None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    #: The registry id of the node whose worker claimed the run's job last (None: not yet).
    node: str | None = None


class RunList(BaseModel):
    runs: list[Run]
    #: Pass as ``before`` for the next page; None when this page is the last.
    next_before: str | None = None


class Finding(BaseModel):
    severity: Literal["info", "minor", "major", "critical"]
    file: str | None = None
    line: int | None = None
    message: str


class Assessment(BaseModel):
    """A critic's verdict on a change."""

    id: int
    run_id: str
    target_run_id: str | None = None
    score: int
    verdict: Literal["pass", "revise", "fail"]
    summary: str | None = None
    findings: list[Finding]
    model: str | None = None
    created_at: datetime


class Escalation(BaseModel):
    """One step of what happened after quality fell short."""

    id: int
    run_id: str
    step: int
    action: str
    reason: str
    assessment_id: int | None = None
    child_run_id: str | None = None
    detail: dict[str, Any] | None = None
    created_at: datetime


class JobAttempt(BaseModel):
    """An attempt at a run's job that ended without success (ADR 0026).

    ``outcome``: ``lost`` (its worker died while it ran beside ``beside`` other jobs: retried
    alone, no stall counted), ``stalled`` (its worker died while it ran alone), ``dead`` (the
    stall that dead-lettered it), ``retry`` / ``failed`` (it raised an error), ``released``
    (the daemon stopped; the attempt was given back).
    """

    job_id: int
    attempt: int
    outcome: str
    isolated: bool
    beside: int
    error: str | None = None
    retry_at: datetime | None = None
    created_at: datetime


class RunReview(BaseModel):
    """A run's child runs, quality assessments and escalation steps, and the attempts of its
    job that ended without success."""

    children: list[Run]
    assessments: list[Assessment]
    escalations: list[Escalation]
    #: The run's model calls with its stages' (``calls``, ``tokens_in``, ``tokens_out``,
    #: ``cost``), from the cost ledger.
    usage: dict[str, Any] = Field(default_factory=dict)
    attempts: list[JobAttempt] = []


class ThreadRun(BaseModel):
    """One run of a conversation."""

    id: str
    kind: str
    status: RunStatus
    goal: str
    model: str | None = None
    parent_id: str | None = None
    created_at: datetime


class Thread(BaseModel):
    """A conversation runs share (``--continue RUN``): its runs, oldest first."""

    id: str
    title: str | None = None
    created_at: datetime
    #: When its newest message was written (its creation when it has none).
    active_at: datetime
    messages_count: int
    runs: list[ThreadRun]


class ThreadList(BaseModel):
    threads: list[Thread]


class ThreadMessage(BaseModel):
    """One message of a thread; ``summary`` messages stand for the ones before ``meta.upto``
    in what is sent to a model (the originals are kept)."""

    id: int
    run_id: str | None = None
    role: str
    #: At most 2,000 characters; ``truncated`` says when the stored text is longer.
    content: str
    truncated: bool = False
    meta: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime


class ThreadDetail(Thread):
    messages: list[ThreadMessage]


class Applied(BaseModel):
    """What ``POST /v1/runs/{id}/apply`` changed in the user's tree."""

    run_id: str
    workspace: str
    files: list[str]
    summary: str
    worktree_removed: bool = Field(
        default=False, description="The run's worktree (or copy) was removed once applied."
    )


class WorktreeRemoved(BaseModel):
    """One run's sandbox removed: why, and whether its branch ``kyros/RUN`` was kept (it is
    when the run committed on it)."""

    run_id: str
    reason: str
    branch: str | None = None
    branch_kept: bool


class Discarded(BaseModel):
    """What ``POST /v1/runs/{id}/discard`` removed."""

    run_id: str
    removed: list[WorktreeRemoved]


class WorktreeClean(BaseModel):
    """Body of ``POST /v1/worktrees/clean``."""

    model_config = ConfigDict(extra="forbid")

    older_than_seconds: float = Field(
        default=0.0,
        ge=0,
        le=100 * 365 * 86400,
        description="Only runs that ended at least this long ago; 0: every run that ended.",
    )


class WorktreesCleaned(BaseModel):
    """What ``POST /v1/worktrees/clean`` removed."""

    removed: list[WorktreeRemoved]


class Event(BaseModel):
    """One entry of a run's append-only event log; ``seq`` starts at 1 and has no gaps."""

    run_id: str
    seq: int
    type: str
    data: dict[str, Any]
    created_at: datetime


class Job(BaseModel):
    id: int
    kind: str
    run_id: str | None
    status: JobStatus
    priority: int
    attempts: int
    stalls: int
    #: Times its worker died while it ran beside other jobs (no stall counted).
    losses: int = 0
    max_attempts: int
    run_at: datetime
    lease_owner: str | None
    lease_expires_at: datetime | None
    fencing_token: int
    error: str | None
    created_at: datetime
    finished_at: datetime | None


class JobList(BaseModel):
    jobs: list[Job]


class AgentStatus(BaseModel):
    name: str
    role: str
    model: str | None
    status: str
    current_run: str | None
    #: Why an ``offline`` agent cannot work (no key, no model configured); None otherwise.
    problem: str | None = None


class AgentStatusList(BaseModel):
    agents: list[AgentStatus]


Policy = Literal["read-only", "ask", "auto", "full"]
ToolClass = Literal["read", "write", "command"]


class AgentLimits(_Wire):
    max_turns: Annotated[int, Field(ge=1, le=10_000)] = 40
    max_tool_calls: Annotated[int, Field(ge=0, le=100_000)] = 120
    wall_seconds: Annotated[float, Field(gt=0, le=7 * 86400)] = 1800
    budget: Annotated[float, Field(ge=0)] | None = None
    allowed_commands: list[Annotated[CleanStr, Field(min_length=1, max_length=256)]] | None = None


class EscalationPolicy(_Wire):
    max_revisions: Annotated[int, Field(ge=0, le=20)] = 2
    stronger_model: Name | None = None
    human: bool = True


class AgentSpec(_Wire):
    """Body of ``POST /v1/agents`` (all fields) and ``PATCH /v1/agents/{name}`` (any)."""

    name: Annotated[CleanStr, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")] | None = None
    role: Literal["plan", "implement", "critic", "custom"] | None = None
    model: Name | None = None
    system_prompt: Annotated[CleanStr, Field(max_length=MAX_GOAL_CHARS)] | None = None
    tools: list[ToolClass] | None = None
    approval_policy: Policy | None = None
    limits: AgentLimits | None = None
    escalation: EscalationPolicy | None = None
    paused: bool | None = None


class Agent(BaseModel):
    name: str
    role: str
    model: str | None = None
    system_prompt: str | None = None
    tools: list[str]
    approval_policy: str
    limits: dict[str, Any]
    escalation: dict[str, Any]
    paused: bool = False
    builtin: bool = False
    status: str = "idle"
    current_run: str | None = None
    #: Why an ``offline`` agent cannot work; None otherwise.
    problem: str | None = None


class AgentList(BaseModel):
    agents: list[Agent]


# --- terminals -----------------------------------------------------------------------------------

TerminalName = Annotated[CleanStr, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]


class TerminalCreate(_Wire):
    """Body of ``POST /v1/terminals``: what to run (default: the user's shell), where, how big."""

    command: list[Annotated[CleanStr, Field(max_length=4096)]] | None = Field(
        default=None, max_length=256
    )
    cwd: PathStr | None = None
    name: TerminalName | None = None
    rows: Annotated[int, Field(ge=2, le=1000)] = 24
    cols: Annotated[int, Field(ge=2, le=1000)] = 80


class TerminalInput(_Wire):
    """Body of ``POST /v1/terminals/{id}/input``: text typed into the terminal."""

    data: Annotated[CleanStr, Field(min_length=1, max_length=64 * 1024)]


class Terminal(BaseModel):
    id: str
    name: str | None = None
    command: list[str]
    cwd: str
    pid: int | None = None
    rows: int
    cols: int
    status: Literal["running", "exited"]
    exit_code: int | None = None
    signal: int | None = None
    run_id: str | None = None
    viewers: int = 0
    created_at: datetime


class TerminalList(BaseModel):
    terminals: list[Terminal]


# --- usage (the cost ledger) ---------------------------------------------------------------------


class UsageBy(StrEnum):
    """What ``GET /v1/usage`` groups model calls by (``day``: UTC calendar date)."""

    RUN = "run"
    AGENT = "agent"
    MODEL = "model"
    PROJECT = "project"
    DAY = "day"
    PROVIDER = "provider"
    OUTCOME = "outcome"


class UsageGroup(BaseModel):
    """Totals of the model calls sharing one key (or of all of them: a report's ``total``)."""

    #: The group's value (a model, a run id, ``YYYY-MM-DD``…); null where the column is empty.
    key: str | None
    calls: int
    #: Calls whose outcome is ``ok``.
    ok: int
    #: Calls that failed: neither ``ok`` nor still ``pending``.
    failed: int
    #: Calls per outcome (``ok``, ``pending``, ``rate_limit``, ``timeout_first_token``…).
    outcomes: dict[str, int]
    tokens_in: int
    tokens_out: int
    cached_tokens: int
    #: USD, of the calls whose cost is known.
    cost: float
    #: Calls whose cost is unknown (no price known): not in ``cost``, never counted as 0.
    unknown_cost_calls: int = 0
    #: Calls per cost source: configured, reported, listed, unknown.
    cost_sources: dict[str, int] = {}
    #: Mean latency of the successful calls, ms; null without any.
    latency_ms_avg: float | None = None
    #: Grouped by run: the stages whose calls a parent run's group includes.
    children: list[str] = Field(default_factory=list)


class UsageReport(BaseModel):
    """``GET /v1/usage``: the ledger grouped, most expensive first (days in calendar order)."""

    by: UsageBy
    #: The window, ``since <= created_at < until``, as applied (UTC).
    since: datetime | None = None
    until: datetime | None = None
    run: str | None = None
    groups: list[UsageGroup]
    total: UsageGroup


class UsageCall(BaseModel):
    """One model call in the ledger."""

    id: int
    created_at: datetime
    model: str
    provider: str | None = None
    agent: str | None = None
    project: str | None = None
    run_id: str | None = None
    tokens_in: int
    tokens_out: int
    cached_tokens: int
    #: USD; null when unknown (no price known, or a call lost with the daemon).
    cost: float | None = None
    #: Where the cost came from: configured, reported, listed or unknown.
    cost_source: str | None = None
    latency_ms: float | None = None
    #: ``ok``, a failure class, ``pending`` (in flight), ``interrupted`` or ``lost`` (in flight
    #: when its daemon died).
    outcome: str
    #: The role the call served (plan, implement, critic…), where recorded.
    role: str | None = None
    #: A failed call's short, redacted error.
    error: str | None = None


class UsageCallList(BaseModel):
    calls: list[UsageCall]


# --- models (the catalogue) ---------------------------------------------------------------------


class ModelCooldown(BaseModel):
    """A model resting after failures: no call reaches it for ``seconds`` more."""

    seconds: float
    #: The failure that put it to rest (``rate_limit``, ``auth``, ``timeout_first_token``…).
    reason: str


class ModelEntry(BaseModel):
    """One model kyros could use: configured (``[models.ALIAS]``, a role, ``model``), detected
    from a provider key, or the built-in ``demo``. Never carries key material."""

    name: str
    #: Where it comes from: ``config [models]``, ``config [roles.plan]``, ``detected from …``.
    source: str
    #: Roles using it: ``plan``, ``critic fallback``…
    roles: list[str] = []
    #: The litellm model id.
    model: str
    provider: str
    api_base: str | None = None
    #: Whether it can be called now; ``problem`` says why not.
    available: bool
    problem: str | None = None
    #: The environment variable its key is read from (never the key), ``none needed`` or null.
    key: str | None = None
    context_window: int | None = None
    max_output: int | None = None
    #: USD per 1M tokens, from ``price_source``; null when unknown.
    price_in: float | None = None
    price_out: float | None = None
    price_cached: float | None = None
    #: Where the price comes from: ``configured`` (settings, or a loopback server counted
    #: free), ``listed`` (litellm's price list) or ``unknown``; a provider that reports each
    #: call's cost overrides the price list call by call.
    price_source: str | None = None
    #: The price's origin in words (``[models.fast]``, ``litellm's price list``…) or, when
    #: unknown, the settings line that would set it.
    price_detail: str | None = None
    tools: bool | None = None
    vision: bool | None = None
    cooldown: ModelCooldown | None = None


class ModelList(BaseModel):
    """``GET /v1/models``: every model, and per role the names its calls try in order."""

    models: list[ModelEntry]
    roles: dict[str, list[str]]


class ModelTestError(BaseModel):
    #: The failure class: auth, rate_limit, timeout, context_overflow, bad_request, provider,
    #: cut or cooldown.
    kind: str
    #: The ledger's word for it (``timeout_first_token``…).
    outcome: str
    message: str


class ModelTest(BaseModel):
    """``POST /v1/models/{name}/test``: one tiny call and what came of it."""

    name: str
    model: str
    provider: str
    api_base: str | None = None
    ok: bool
    latency_ms: float | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    #: USD; null when no price is known for the model (see ``cost_source``).
    cost: float | None = 0.0
    #: Where the cost came from: configured, reported, listed or unknown.
    cost_source: str | None = None
    #: The start of the answer.
    reply: str | None = None
    error: ModelTestError | None = None


# --- daemon --------------------------------------------------------------------------------------


class TcpListener(BaseModel):
    """The daemon's TCP listener: its address and every host name it answers to."""

    listen: str
    allowed_hosts: list[str]


class Health(BaseModel):
    status: str
    version: str
    api_version: str
    pid: int
    #: None when the daemon listens on its Unix socket only.
    tcp: TcpListener | None = None
    #: This daemon's id in the service registry, and its role (all, api, worker).
    node: str | None = None
    role: str | None = None


class Check(BaseModel):
    ok: bool
    detail: str


class Ready(BaseModel):
    ready: bool
    checks: dict[str, Check]


class ConfigEntry(BaseModel):
    key: str
    value: Any
    source: str
    secret: bool = False
    #: A value the config file now holds that takes effect after a daemon restart.
    pending: Any = None
    pending_source: str | None = None


class ConfigView(BaseModel):
    entries: list[ConfigEntry]


class KeySeen(BaseModel):
    """A provider key the daemon holds: its variable, where it came from, a fingerprint."""

    env_var: str
    #: ``environment`` (the daemon's own) or ``stored key`` (keyring or kyros's file).
    source: str
    #: HMAC-SHA256 of the key under :attr:`DaemonView.key_salt`, 16 hex digits; never the key.
    fingerprint: str


class DaemonView(BaseModel):
    """The daemon as a client compares it with what it sees itself (ADR 0017)."""

    pid: int
    started_at: datetime
    #: Started in the background by a client, not by the user's `kyros daemon serve`.
    autostarted: bool
    #: No job queued or running and no terminal open: a restart would interrupt nothing.
    idle: bool
    activity: str
    config_file: str
    config_read_at: datetime
    #: Why the changed config file cannot be used (runs are refused until it is fixed).
    config_error: str | None = None
    #: Settings changed in the config file that take effect after a restart.
    restart_needed: list[str]
    key_salt: str
    keys: list[KeySeen]


class ErrorBody(BaseModel):
    code: str
    message: str
    detail: Any = None


class ErrorResponse(BaseModel):
    error: ErrorBody


class NodeCapabilities(BaseModel):
    """What a node offers: configured models, providers it holds keys for (never the keys),
    the workspace roots it can see, a sandbox (bwrap) installed, terminals, jobs run."""

    models: list[str] = []
    providers: list[str] = []
    workspace_roots: list[str] = []
    sandbox: bool = False
    terminals: bool = False
    runs_jobs: bool = False


class Node(BaseModel):
    """One daemon in the service registry (docs/cluster.md)."""

    id: str
    #: all (serves clients and runs jobs), api (serves clients) or worker (runs jobs).
    role: Literal["all", "api", "worker"]
    host: str
    pid: int
    version: str
    api_version: str
    schema_revision: str
    #: Where other nodes and clients reach it (http(s)://HOST:PORT or unix:///path).
    url: str | None = None
    capabilities: NodeCapabilities
    #: Jobs it runs at once (0 on an api node), and how many it runs now.
    capacity: int
    load: int
    #: up, draining (claims nothing new, finishes what runs) or down (stopped, or its
    #: heartbeat expired by the database's clock).
    state: Literal["up", "draining", "down"]
    #: Bumped at every registration of this id.
    incarnation: int
    started_at: datetime
    last_heartbeat: datetime
    #: When its lease runs out unless renewed, by the registry's (the database's) clock.
    expires_at: datetime
    stopped_at: datetime | None = None
    #: Why it is down, or None.
    reason: str | None = None
    #: Seconds since its last heartbeat, by the registry's clock when this was read.
    heartbeat_age: float


class NodeList(BaseModel):
    """Every node that joined this database, live ones first."""

    nodes: list[Node]
    #: The registry's clock (the database's) when the list was read.
    now: datetime
