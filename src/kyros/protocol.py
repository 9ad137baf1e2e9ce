"""Wire schemas shared by the daemon and its clients (API version :data:`kyros.API_VERSION`).

Strings that cross the wire are validated here once: no NUL bytes, no lone surrogates, and a
size bound on every free-text field, so bad input is a 422 at the edge and never reaches a store.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

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


class RunKind(StrEnum):
    PLAN = "plan"
    IMPLEMENT = "implement"
    CRITIC = "critic"
    PIPELINE = "pipeline"


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    NEEDS_APPROVAL = "needs_approval"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    ESCALATED = "escalated"

    @property
    def terminal(self) -> bool:
        return self in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)


#: Statuses a run never leaves, and the event type that announces each; nothing follows it.
TERMINAL_STATUSES = frozenset(s.value for s in RunStatus if s.terminal)
FINAL_EVENT_TYPES = frozenset(f"run.{status}" for status in TERMINAL_STATUSES)


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DEAD = "dead"
    CANCELLED = "cancelled"


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


class RunCreate(_Wire):
    """Body of ``POST /v1/runs/{kind}``."""

    goal: Goal
    workspace: PathStr
    model: Name | None = None
    api_base: Annotated[CleanStr, Field(max_length=2048)] | None = None
    agent: Name | None = None


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
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None


class RunList(BaseModel):
    runs: list[Run]


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
