"""Run and job kinds and statuses, and which statuses end a run.

Apart from :mod:`kyros.protocol` (which re-exports them) because clients that only need to know
whether a run has ended, such as the CLI's follow loop and the console, should not pay for
building the wire schemas (pydantic) at start-up.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["FINAL_EVENT_TYPES", "TERMINAL_STATUSES", "JobStatus", "RunKind", "RunStatus"]


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
    #: Stopped before a model call whose worst case would pass a spending cap.
    BUDGET_EXHAUSTED = "budget_exhausted"

    @property
    def terminal(self) -> bool:
        return self in (
            RunStatus.SUCCEEDED,
            RunStatus.FAILED,
            RunStatus.CANCELLED,
            RunStatus.BUDGET_EXHAUSTED,
        )


#: Statuses a run never leaves, and the event type that announces each; nothing follows it.
TERMINAL_STATUSES = frozenset(s.value for s in RunStatus if s.terminal)
FINAL_EVENT_TYPES = frozenset(f"run.{status}" for status in TERMINAL_STATUSES)


class JobStatus(StrEnum):
    QUEUED = "queued"
    #: Its worker died while it ran beside other jobs: it is retried alone (ADR 0026).
    SUSPECT = "suspect"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DEAD = "dead"
    CANCELLED = "cancelled"
