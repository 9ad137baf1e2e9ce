"""How run fields read in the console's cells: status in colour, money, ages, one-line goals."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rich.text import Text

from kyros import sanitize

#: Rich styles per run status (cells are Rich renderables; the panes' theme is in app.tcss).
STATUS_STYLES = {
    "queued": "dim",
    "running": "bold cyan",
    "needs_approval": "bold yellow",
    "succeeded": "green",
    "failed": "bold red",
    "cancelled": "dim",
    "escalated": "magenta",
    "budget_exhausted": "red",
}

#: Agent live statuses.
AGENT_STYLES = {"idle": "green", "busy": "bold cyan", "paused": "yellow", "offline": "dim"}


def status_text(status: str) -> Text:
    return Text(status, style=STATUS_STYLES.get(status, ""))


def agent_status_text(status: str) -> Text:
    return Text(status, style=AGENT_STYLES.get(status, ""))


def money(value: float | None) -> str:
    return f"${value or 0.0:.4f}"


def parse_time(value: str | datetime) -> datetime:
    when = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def age(created_at: str | datetime, now: datetime) -> str:
    """``42s``, ``5m``, ``3h``, ``2d``: how long ago, in the largest whole unit."""
    seconds = max(0.0, (now - parse_time(created_at)).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def one_line(text: str | None, width: int) -> str:
    """``text`` on one line, cut to ``width`` characters with an ellipsis, without terminal
    escapes or control characters (the one sanitiser, :func:`kyros.sanitize.one_line`)."""
    return sanitize.one_line(text, width)


def waits_on(run: dict[str, Any]) -> str:
    """What a run in ``needs_approval`` waits on, in a few words."""
    pending = run.get("pending") or {}
    if pending.get("kind") == "quality_gate":
        return "quality gate"
    tool = pending.get("tool")
    klass = pending.get("class")
    if tool and klass:
        return f"{tool} ({klass})"
    return str(tool or "an answer")
