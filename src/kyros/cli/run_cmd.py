"""`kyros run KIND …`: start a run and follow it to the end (or detach)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from kyros.cli.state import group, print_json, print_jsonl

app = group("Start a run: plan now; implement and critic come next.")

PHASES = {
    "context": "reading the workspace",
    "context.done": "workspace read",
    "model": "asking the model",
}


def _read_goal(goal: str) -> str:
    if goal != "-":
        return goal
    if sys.stdin.isatty():
        sys.stderr.write("kyros: reading the goal from stdin (end with Ctrl-D)\n")
    text = sys.stdin.read().strip()
    if not text:
        raise typer.BadParameter("the goal read from stdin is empty", param_hint="GOAL")
    return text


@app.command("plan")
def plan(
    goal: Annotated[
        str,
        typer.Argument(metavar="GOAL", help="What you want planned, or '-' to read it from stdin."),
    ],
    workspace: Annotated[
        Path,
        typer.Option(
            "--workspace", "-w", help="Directory to plan in.", show_default="current directory"
        ),
    ] = Path("."),
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help="Model: a litellm id (openai/gpt-4.1-mini, "
            "anthropic/…), openai/NAME with --api-base, or 'demo' (scripted, no key).",
            show_default=False,
        ),
    ] = None,
    api_base: Annotated[
        str | None,
        typer.Option(
            "--api-base",
            help="Base URL of an OpenAI-compatible server (Ollama, vLLM, LM Studio, a gateway).",
            show_default=False,
        ),
    ] = None,
    detach: Annotated[
        bool,
        typer.Option(
            "--detach", "-d", help="Print the run id and return; the run goes on in the daemon."
        ),
    ] = False,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the finished run as one JSON document.")
    ] = False,
    jsonl: Annotated[
        bool, typer.Option("--jsonl", help="Print events as JSON lines while the run works.")
    ] = False,
) -> None:
    """Plan a change: reads the workspace, asks the planner model, prints a structured plan.

    Exit codes: 0 succeeded, 1 failed or cancelled, 2 bad usage or no model configured,
    3 daemon unreachable, 4 auth.

    Examples:

      kyros run plan "add a --verbose flag"

      echo "split the parser module" | kyros run plan - --json | jq .output.plan.steps

      kyros run plan "…" --model openai/qwen2.5-coder --api-base http://127.0.0.1:11434/v1
    """
    if json_out and jsonl:
        raise typer.BadParameter("choose one of --json and --jsonl")
    text = _read_goal(goal)
    root = workspace.expanduser().resolve()
    if not root.is_dir():
        raise typer.BadParameter(f"{workspace} is not a directory", param_hint="--workspace")
    from kyros.cli.state import client, settings

    loaded = settings(workspace=root)
    c = client(loaded)
    run = c.create_run(
        "plan", {"goal": text, "workspace": str(root), "model": model, "api_base": api_base}
    )
    if detach:
        if json_out:
            print_json(run)
        else:
            typer.echo(run["id"])
            sys.stderr.write(
                f"kyros: run {run['id']} queued; follow it with `kyros runs events {run['id']}`\n"
            )
        return
    try:
        final = follow(
            c, run, jsonl=jsonl, quiet=json_out, reconnect=loaded.settings.reconnect_seconds
        )
    except KeyboardInterrupt:
        sys.stderr.write(
            f"\nkyros: detached; run {run['id']} goes on in the daemon. "
            f"`kyros runs events {run['id']}` follows it, "
            f"`kyros runs cancel {run['id']}` stops it.\n"
        )
        raise typer.Exit(130) from None
    if json_out:
        print_json(final)
    elif not jsonl:
        show_result(final)
    raise typer.Exit(0 if final["status"] == "succeeded" else 1)


def follow(
    c: Any, run: dict[str, Any], *, jsonl: bool, quiet: bool, reconnect: float = 30.0
) -> dict[str, Any]:
    """Stream the run's events until its final one; show progress on a terminal."""
    progress = None if (jsonl or quiet or not sys.stderr.isatty()) else _Progress(run)
    try:
        for event in c.events(run["id"], reconnect_for=reconnect):
            if jsonl:
                print_jsonl(event)
            elif progress is not None:
                progress.update(event)
            elif not quiet:
                _plain_progress(event)
    finally:
        if progress is not None:
            progress.stop()
    return dict(c.run(run["id"]))


def _plain_progress(event: dict[str, Any]) -> None:
    kind, data = event["type"], event["data"]
    if kind == "progress":
        sys.stderr.write(f"kyros: {PHASES.get(data.get('phase'), data.get('phase'))}\n")
    elif kind == "plan.invalid":
        sys.stderr.write(f"kyros: the plan was invalid ({data.get('error')}); asking again\n")
    elif kind in ("run.failed", "run.cancelled"):
        sys.stderr.write(f"kyros: {kind.split('.')[1]}: {data.get('reason')}\n")


class _Progress:
    """A one-line live status on stderr: phase, tokens streamed, elapsed time."""

    def __init__(self, run: dict[str, Any]) -> None:
        from rich.console import Console

        self.console = Console(stderr=True, highlight=False)
        self.chars = 0
        self.phase = "queued"
        self.status = self.console.status(self._text(), spinner="dots")
        self.status.start()
        self.run_id = run["id"]

    def _text(self) -> str:
        tokens = f" · ~{self.chars // 4} tokens" if self.chars else ""
        return f"{self.phase}{tokens}"

    def update(self, event: dict[str, Any]) -> None:
        kind, data = event["type"], event["data"]
        if kind == "run.started":
            self.phase = "started"
        elif kind == "progress":
            phase = data.get("phase")
            self.phase = PHASES.get(phase, phase)
            if phase == "context.done":
                self.console.print(
                    f"[dim]read {data.get('files')} files "
                    f"(~{data.get('tokens')} tokens of context)[/dim]"
                )
            if phase == "model":
                self.phase = f"asking {data.get('model')}"
        elif kind == "model.delta":
            self.chars += len(data.get("text", ""))
        elif kind == "plan.invalid":
            self.console.print(f"[yellow]plan invalid ({data.get('error')}); asking again[/yellow]")
            self.chars = 0
        self.status.update(self._text())

    def stop(self) -> None:
        self.status.stop()


def show_result(run: dict[str, Any]) -> None:
    from rich.markdown import Markdown

    from kyros.cli.state import stderr_console, stdout_console

    out, err = stdout_console(), stderr_console()
    if run["status"] == "succeeded":
        output = run.get("output") or {}
        if output.get("note"):
            err.print(f"[bold yellow]{output['note']}[/bold yellow]")
        markdown = output.get("markdown") or ""
        if sys.stdout.isatty():
            out.print(Markdown(markdown))
        else:
            sys.stdout.write(markdown + "\n")
        cost = run.get("cost") or 0.0
        err.print(
            f"[dim]run {run['id']} · {run.get('model')} · "
            f"{run.get('tokens_in', 0)}→{run.get('tokens_out', 0)} tokens · "
            f"${cost:.4f}[/dim]"
        )
    else:
        err.print(f"[bold red]run {run['id']} {run['status']}[/bold red]: {run.get('error') or ''}")
