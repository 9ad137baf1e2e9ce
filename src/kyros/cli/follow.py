"""Following a run from the terminal: live progress on stderr, the result on stdout."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kyros.cli.state import print_jsonl
from kyros.client.event_words import PHASES, event_line
from kyros.sanitize import clean_text

if TYPE_CHECKING:
    from kyros.settings import Loaded

#: A run that stops to wait for a human ends the follow: the terminal is not held hostage.
PAUSE_EVENTS = frozenset({"approval.requested"})
#: Endings the result reports (with the reason) once the follow is over.
_ENDINGS = frozenset({"run.failed", "run.cancelled", "run.budget_exhausted"})


def follow(
    c: Any,
    run: dict[str, Any],
    *,
    jsonl: bool,
    quiet: bool,
    reconnect: float = 30.0,
    loaded: Loaded | None = None,
) -> dict[str, Any]:
    """Stream the run's events until it ends or waits for approval; show progress on a TTY.

    With ``loaded`` and a local daemon, a daemon that dies meanwhile is started again, as
    every command starts one, and the stream resumes after the last event seen: the run's
    job goes back to the queue when its lease expires and the new daemon takes it up."""
    progress = None if (jsonl or quiet or not sys.stderr.isatty()) else _Progress()
    revive = reviver(loaded) if loaded is not None and c.target.local else None
    try:
        for event in c.events(
            run["id"], reconnect_for=reconnect, stop_on=PAUSE_EVENTS, revive=revive
        ):
            if jsonl:
                print_jsonl(event)
            elif event["type"] in _ENDINGS:
                continue  # show_result says how the run ended, once
            elif progress is not None:
                progress.update(event)
            elif not quiet:
                _plain_progress(event)
    finally:
        if progress is not None:
            progress.stop()
    return dict(c.run(run["id"]))


def reviver(loaded: Loaded) -> Callable[[], None]:
    """What a follower of a local daemon calls when it stops answering: start one again."""

    def revive() -> None:
        from kyros.cli.state import client

        sys.stderr.write("kyros: the daemon stopped answering; starting one and resuming\n")
        sys.stderr.flush()
        fresh = client(loaded)  # starts a local daemon when none answers
        pid = fresh.health()["pid"]
        fresh.close()
        sys.stderr.write(
            f"kyros: daemon pid {pid} answers; the run goes on once its job is taken up again\n"
        )
        sys.stderr.flush()

    return revive


def _safe(value: Any) -> str:
    """A value from the run (a model, a file, a user) for a rich line: no escapes, no markup."""
    from rich.markup import escape

    return escape(clean_text(str(value)))


def _plain_progress(event: dict[str, Any]) -> None:
    line = event_line(event)
    if line:
        sys.stderr.write(f"kyros: {line}\n")


class _Progress:
    """A live status line on stderr (phase, tokens streamed) with notable events above it."""

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console(stderr=True, highlight=False)
        self.chars = 0
        self.phase = "queued"
        self.status = self.console.status(self._text(), spinner="dots")
        self.status.start()

    def _text(self) -> str:
        tokens = f" · ~{self.chars // 4} tokens" if self.chars else ""
        return f"{self.phase}{tokens}"

    def update(self, event: dict[str, Any]) -> None:
        kind, data = event["type"], event["data"]
        if kind == "run.started":
            self.phase = "started"
        elif kind == "progress":
            phase = data.get("phase")
            self.phase = _safe(PHASES.get(phase, phase))
            if phase == "context.done":
                self.console.print(
                    f"[dim]read {_safe(data.get('files'))} files "
                    f"(~{_safe(data.get('tokens'))} tokens of context)[/dim]"
                )
            if phase == "model":
                self.phase = f"asking {_safe(data.get('model'))}"
        elif kind == "model.request":
            self.phase = f"turn {data.get('turn')} · asking {_safe(data.get('model'))}"
        elif kind == "model.delta":
            self.chars += len(data.get("text", ""))
        else:
            if data.get("discard"):
                self.chars = 0  # the failed attempt's tokens do not count
            if kind == "model.fallback":
                self.phase = f"asking {_safe(data.get('to'))}"
            line = event_line(event)
            if line:
                self.console.print(f"[dim]{_safe(line)}[/dim]")
        self.status.update(self._text())

    def stop(self) -> None:
        self.status.stop()


def show_result(run: dict[str, Any]) -> None:
    """The run's outcome for people: Markdown on a TTY, plain text in a pipe."""
    from kyros.cli.state import stderr_console, stdout_console

    out, err = stdout_console(), stderr_console()
    output = run.get("output") or {}
    if run["status"] == "needs_approval":
        _show_pending(run)
        return
    if run["status"] != "succeeded":
        err.print(
            f"[bold red]run {run['id']} {run['status']}[/bold red]: {_safe(run.get('error') or '')}"
        )
        return
    if output.get("note") and run["kind"] != "pipeline":  # the pipeline says it in its text
        # As text, not markup: the demo's note is itself in [brackets].
        err.print(clean_text(str(output["note"])), style="bold yellow", markup=False)
    if run["kind"] == "implement":
        text = (output.get("summary") or "").strip()
        files = output.get("files") or []
        text += f"\n\nChanged {len(files)} file(s): {', '.join(files) or 'none'}"
        if files:
            text += f"\n\n`kyros runs diff {run['id']}` shows the change; "
            text += f"`kyros run apply {run['id']}` brings it into your tree."
    elif run["kind"] == "pipeline":
        text = f"Pipeline ended after the {output.get('stage')} stage: {output.get('note')}."
        assessment = output.get("assessment")
        if assessment:
            text += f"\n\nReview: {assessment['verdict']} ({assessment['score']}/100)."
        text += f"\n\n`kyros runs show {run['id']}` lists the stages; "
        text += f"`kyros run apply {run['id']}` applies the change."
    else:
        text = output.get("markdown") or ""
    _print_markdown(out, clean_text(text))
    cost = run.get("cost") or 0.0
    err.print(
        f"[dim]run {run['id']} · {_safe(run.get('model'))} · "
        f"{run.get('tokens_in', 0)}→{run.get('tokens_out', 0)} tokens · ${cost:.4f}[/dim]"
    )


def _print_markdown(out: Any, text: str) -> None:
    if sys.stdout.isatty():
        from rich.markdown import Markdown

        out.print(Markdown(text))
    else:
        sys.stdout.write(text.rstrip() + "\n")


def _show_pending(run: dict[str, Any]) -> None:
    import json

    from kyros.cli.state import stderr_console

    err = stderr_console()
    pending = run.get("pending") or {}
    err.print(f"[bold yellow]run {run['id']} waits for approval[/bold yellow]")
    if pending.get("kind") == "quality_gate":
        err.print(f"quality gate: {_safe(pending.get('reason'))}")
    else:
        err.print(f"action: {_safe(pending.get('tool'))} ({_safe(pending.get('class'))})")
        arguments = json.dumps(pending.get("arguments"), indent=2, ensure_ascii=False)
        err.print(clean_text(arguments), markup=False)
        err.print(f"why it asks: {_safe(pending.get('reason'))}")
    err.print(
        f"answer with `kyros run approve {run['id']}` (--always for every such action) "
        f"or `kyros run deny {run['id']} --reason …`"
    )
