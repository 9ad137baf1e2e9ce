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
from kyros.statuses import JobStatus, RunKind, RunStatus

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


class Approval(_Wire):
    """Body of ``POST /v1/runs/{id}/approve``: the human's answer to the pending action."""

    approve: bool
    #: Also approve every later action of the same class (write / command) in this run.
    always: bool = False
    reason: Annotated[CleanStr, Field(max_length=4096)] | None = None


class Run(BaseModel):
    id: str
    kind: RunKind
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
    attempts: list[JobAttempt] = []


class Applied(BaseModel):
    """What ``POST /v1/runs/{id}/apply`` changed in the user's tree."""

    run_id: str
    workspace: str
    files: list[str]
    summary: str


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
    #: USD.
    cost: float
    #: Mean latency of the successful calls, ms; null without any.
    latency_ms_avg: float | None = None


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
    cost: float
    latency_ms: float | None = None
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
    #: USD per 1M tokens: the catalogue's override, else the provider's price list.
    price_in: float | None = None
    price_out: float | None = None
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
    #: USD.
    cost: float = 0.0
    #: The start of the answer.
    reply: str | None = None
    error: ModelTestError | None = None


# --- daemon --------------------------------------------------------------------------------------


class Health(BaseModel):
    status: str
    version: str
    api_version: str
    pid: int


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


class ConfigView(BaseModel):
    entries: list[ConfigEntry]


class ErrorBody(BaseModel):
    code: str
    message: str
    detail: Any = None


class ErrorResponse(BaseModel):
    error: ErrorBody
