"""`kyros runs …`: list, inspect, follow, diff and cancel runs."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from kyros.cli.state import client, group, print_json, print_jsonl, settings

app = group("List, inspect, follow, diff and cancel runs.")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]


def _age(value: str) -> str:
    from datetime import UTC, datetime

    seconds = (datetime.now(UTC) - datetime.fromisoformat(value)).total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


@app.command("list")
def list_runs(
    status: Annotated[str | None, typer.Option(help="Only runs with this status.")] = None,
    kind: Annotated[str | None, typer.Option(help="Only runs of this kind.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many.")] = 20,
    before: Annotated[
        str | None,
        typer.Option(
            help="List the runs after this run id (the next page: pass the last id shown).",
            metavar="RUN_ID",
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Runs, newest first. For the next page, pass the last id shown to --before."""
    runs = client().runs(status=status, kind=kind, limit=limit, before=before)
    if json_out:
        print_json(runs)
        return
    from rich.table import Table

    from kyros.cli.state import stdout_console

    table = Table(box=None, header_style="bold")
    for column in ("ID", "KIND", "STATUS", "AGE", "COST", "GOAL"):
        table.add_column(column)
    for run in runs:
        goal = " ".join(run["goal"].split())
        table.add_row(
            run["id"],
            run["kind"],
            run["status"],
            _age(run["created_at"]),
            f"${run['cost']:.4f}",
            goal[:60] + ("…" if len(goal) > 60 else ""),
        )
    stdout_console().print(table)


@app.command("show")
def show(run_id: Annotated[str, typer.Argument(help="Run id.")], json_out: JsonOpt = False) -> None:
    """One run: status, model, usage, its output, its stages, reviews and escalation steps."""
    c = client()
    run = {**c.run(run_id), **c.review(run_id)}
    if json_out:
        print_json(run)
        return
    from kyros.cli.follow import show_result
    from kyros.statuses import TERMINAL_STATUSES

    typer.echo(f"{run['id']}  {run['kind']}  {run['status']}  model={run.get('model')}")
    typer.echo(f"goal: {run['goal']}")
    typer.echo(
        f"cost so far: ${run.get('cost') or 0:.4f} "
        f"({run.get('tokens_in', 0)} tokens in, {run.get('tokens_out', 0)} out)"
    )
    for child in run["children"]:
        typer.echo(f"  stage {child['kind']:<9} {child['id']}  {child['status']}")
    for a in run["assessments"]:
        typer.echo(f"  review {a['verdict']} {a['score']}/100 by {a['model']}: {a['summary']}")
    for step in run["escalations"]:
        typer.echo(f"  escalation {step['step']}: {step['action']} — {step['reason']}")
    for a in run.get("attempts") or []:
        alone = ", alone" if a["isolated"] else ""
        typer.echo(f"  attempt {a['attempt']} {a['outcome']}{alone}: {a.get('error') or ''}")
    if run["status"] in TERMINAL_STATUSES or run["status"] == "needs_approval":
        show_result(run)


@app.command("diff")
def diff(run_id: Annotated[str, typer.Argument(help="Run id.")]) -> None:
    """The change an implement run made (a pipeline's latest), as a unified diff."""
    c = client()
    run = c.run(run_id)
    if run["kind"] == "pipeline":
        stages = [
            k
            for k in c.review(run_id)["children"]
            if k["kind"] == "implement" and k["status"] == "succeeded"
        ]
        if not stages:
            raise typer.BadParameter(f"pipeline {run_id} has no finished implement stage")
        run = stages[-1]
    text = (run.get("output") or {}).get("diff")
    if text is None:
        raise typer.BadParameter(f"run {run['id']} ({run['kind']}, {run['status']}) has no diff")
    import sys

    if sys.stdout.isatty() and text:
        from rich.syntax import Syntax

        from kyros.cli.state import stdout_console

        stdout_console().print(Syntax(text, "diff", theme="ansi_dark", background_color="default"))
    else:
        sys.stdout.write(text)


@app.command("events")
def events(
    run_id: Annotated[str, typer.Argument(help="Run id.")],
    after: Annotated[int, typer.Option(min=0, help="Start after this sequence number.")] = 0,
    follow: Annotated[
        bool, typer.Option("--follow/--no-follow", help="Keep streaming until the run ends.")
    ] = True,
    json_out: JsonOpt = False,
    jsonl: Annotated[bool, typer.Option("--jsonl", help="One JSON event per line.")] = False,
) -> None:
    """The run's event log from the start (or --after N), then live until it ends."""
    loaded = settings()
    c = client(loaded)
    stream = c.events(run_id, after=after, follow=follow, reconnect_for=loaded.reconnect_seconds)
    if json_out:
        print_json(list(stream))
        return
    for event in stream:
        if jsonl:
            print_jsonl(event)
        else:
            typer.echo(_line(event))


def _line(event: dict[str, Any]) -> str:
    data = event["data"]
    if event["type"] == "model.delta":
        summary = repr(data.get("text", ""))[:80]
    else:
        summary = " ".join(f"{k}={v}" for k, v in data.items() if k != "output")[:120]
    return f"{event['seq']:>5}  {event['created_at'][11:19]}  {event['type']:<18} {summary}"


@app.command("cancel")
def cancel(
    run_id: Annotated[str, typer.Argument(help="Run id.")], json_out: JsonOpt = False
) -> None:
    """Cancel a queued or running run."""
    run = client().cancel(run_id)
    if json_out:
        print_json(run)
    else:
        typer.echo(
            f"{run['id']}: {run['status']}"
            + (" (cancel requested)" if run["status"] == "running" else "")
        )
