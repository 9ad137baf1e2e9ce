"""Run events in plain words, shared by both faces: the CLI's progress lines while it follows
a run, and the console's run log (which shows every event worth a line, ``everything=True``)."""

from __future__ import annotations

from typing import Any

from kyros.sanitize import one_line

__all__ = ["FAILURES", "PHASES", "event_line"]

PHASES = {
    "context": "reading the workspace",
    "context.done": "workspace read",
    "model": "asking the model",
}

#: Failure classes of a model call, in plain words.
FAILURES = {
    "rate_limit": "rate-limited by the provider",
    "auth": "the provider refused the key",
    "timeout_connect": "no response from the provider",
    "timeout_first_token": "the provider answered but sent no token in time",
    "timeout_between_chunks": "the provider went silent mid-answer",
    "timeout_total": "the answer took longer than its total deadline",
    "context_overflow": "the prompt is too long for the model",
    "provider": "the provider failed",
    "cut": "the answer was cut off mid-stream",
    "bad_request": "the provider refused the request",
}


def _failure(data: dict[str, Any]) -> str:
    return FAILURES.get(str(data.get("outcome")), str(data.get("outcome")))


def _discarded(data: dict[str, Any]) -> str:
    return " (its partial answer is discarded)" if data.get("discard") else ""


def _first_line(value: Any, width: int = 120) -> str:
    lines = str(value or "").splitlines()
    return lines[0][:width] if lines else ""


def _progress(data: dict[str, Any]) -> str:
    phase = data.get("phase")
    if phase == "context.done":
        return f"workspace read: {data.get('files')} files, ~{data.get('tokens')} tokens"
    if phase == "model" and data.get("model"):
        return f"asking {data.get('model')}"
    return str(PHASES.get(str(phase), phase))


def _pending(data: dict[str, Any]) -> str:
    pending = data.get("pending") or {}
    if pending.get("kind") == "quality_gate":
        return f"waiting for approval: quality gate ({pending.get('reason')})"
    return f"waiting for approval: {pending.get('tool')} ({pending.get('class')})"


def event_line(event: dict[str, Any], *, everything: bool = False) -> str | None:
    """The line for ``event``, or None for events not worth one (``model.delta`` streams).

    By default only what a follower scrolling past wants (retries, fallbacks, failures,
    approvals, stages, tool errors); ``everything`` adds what a screen that stays open shows
    too: start and end, approvals given, each turn, every tool result, terminals.
    """
    kind, data = event["type"], event.get("data") or {}
    if kind in ("run.failed", "run.cancelled", "run.budget_exhausted"):
        return one_line(f"{kind.split('.')[1]}: {data.get('reason')}")
    line = _notable(kind, data)
    if line is None and everything:
        line = _routine(kind, data)
    # Events carry what models, files, commands and users wrote: one sanitiser for both faces.
    return None if line is None else one_line(line)


def _routine(kind: str, data: dict[str, Any]) -> str | None:
    if kind == "run.queued":
        return f"queued: {data.get('kind')} with {data.get('model')} as {data.get('agent')}"
    if kind == "run.started":
        return f"started (attempt {data.get('attempt')})"
    if kind == "run.succeeded":
        return "succeeded"
    if kind == "run.cancel_requested":
        return "cancel requested"
    if kind in ("run.approved", "run.denied"):
        verb = kind.split(".")[1]
        reason = f": {data['reason']}" if data.get("reason") else ""
        return f"{verb}{' (always)' if data.get('always') else ''}{reason}"
    if kind == "run.applied":
        return f"applied: {', '.join(data.get('files') or []) or 'no files'}"
    if kind == "model.request":
        return f"turn {data.get('turn')}: asking {data.get('model')}"
    if kind == "model.call":
        return f"calling {data.get('model')} at {data.get('server')} ({data.get('reason')})"
    if kind == "tool.result":
        return f"{data.get('tool')}: ok"
    if kind == "terminal.started":
        command = data.get("command")
        shown = " ".join(command) if isinstance(command, list) else str(command)
        return f"terminal {data.get('terminal_id')}: {shown}"
    if kind == "terminal.exited":
        return f"terminal {data.get('terminal_id')} exited ({data.get('exit_code')})"
    return None


def _notable(kind: str, data: dict[str, Any]) -> str | None:
    if kind == "approval.requested":
        return _pending(data)
    if kind == "progress":
        return _progress(data)
    if kind == "plan.invalid":
        return f"the plan was invalid ({data.get('error')}); asking again"
    if kind == "sandbox.ready":
        where = f"branch {data['branch']}" if data.get("branch") else "a copy"
        note = f" ({data['note']})" if data.get("note") else ""
        return f"working in {where} at {data.get('root')}{note}"
    if kind == "model.response" and data.get("tool_calls"):
        names = ", ".join(c["function"]["name"] for c in data["tool_calls"])
        return f"turn {data.get('turn')}: {names}"
    if kind == "tool.result" and not data.get("ok"):
        return f"{data.get('tool')}: {_first_line(data.get('output'))}"
    if kind == "stage.started":
        return f"stage {data.get('stage')}: run {data.get('run_id')}"
    if kind == "escalation":
        return f"escalation ({data.get('action')}): {data.get('reason')}"
    if kind == "critic.assessment":
        return f"review: {data.get('verdict')} ({data.get('score')}/100)"
    if kind == "model.retry":
        return (
            f"{data.get('model')}: {_failure(data)}; trying again in {data.get('wait', 0):.1f}s"
            + _discarded(data)
        )
    if kind == "model.fallback":
        return (
            f"{data.get('from')}: {_failure(data)}; falling back to {data.get('to')}"
            + _discarded(data)
        )
    if kind == "run.attempt_lost":
        return f"attempt {data.get('attempt') or ''} lost: {data.get('reason')}; it will be retried"
    if kind == "run.retried":
        return f"retrying the run (attempt {data.get('attempt')})"
    if kind == "model.replaced":
        return (
            f"the critic reviews with {data.get('model')} instead of "
            f"{data.get('replaced') or 'no configured critic'}: {data.get('why')}"
        )
    if kind == "model.waiting":
        return f"every model for this call is resting; waiting {data.get('seconds')}s"
    if kind == "job.released":
        return f"attempt {data.get('attempt')} released: {data.get('reason')}"
    return None
