"""`kyros runs …`: list, inspect, follow, diff, cancel and discard runs; clean worktrees."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from kyros.cli.state import client, group, print_json, print_jsonl, settings

app = group("List, inspect, follow, diff, cancel and discard runs; clean their worktrees.")

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


@app.command("discard")
def discard(
    run_id: Annotated[str, typer.Argument(help="Run id.")], json_out: JsonOpt = False
) -> None:
    """Throw away a finished run's change: its worktree and branch kyros/RUN are removed, and
    it can no longer be applied (a pipeline: all its stages)."""
    result = client().discard(run_id)
    if json_out:
        print_json(result)
        return
    typer.echo(f"discarded run {result['run_id']}" + _removed_words(result["removed"]))


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def _seconds(value: str) -> float:
    """``30m``, ``24h``, ``7d``, ``2w`` (or plain seconds) as seconds."""
    text = value.strip().lower()
    unit = _DURATION_UNITS.get(text[-1:]) if text else None
    number = text[:-1] if unit else text
    try:
        amount = float(number)
    except ValueError:
        amount = -1.0
    if not number or amount < 0 or amount > 100 * 365:
        raise typer.BadParameter(
            f"{value!r} is not a duration: use a number and s, m, h, d or w (7d, 12h)",
            param_hint="--older-than",
        )
    return amount * (unit or 1)


@app.command("clean")
def clean(
    older_than: Annotated[
        str | None,
        typer.Option(
            "--older-than",
            help="Only runs that ended at least this long ago (30m, 12h, 7d, 2w).",
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Remove the worktrees of finished runs (all of them, or those older than --older-than).

    Runs still active are left alone; diffs stay (`kyros runs diff`, `kyros run apply` still
    work); a branch kyros/RUN the run committed on is kept. The daemon also removes worktrees
    by itself after `worktree_retention_days` (7 by default).
    """
    seconds = _seconds(older_than) if older_than is not None else 0.0
    removed = client().clean_worktrees(seconds)
    if json_out:
        print_json({"removed": removed})
        return
    if not removed:
        typer.echo("no worktree to remove")
    for item in removed:
        kept = f" (branch {item['branch']} kept: it has the run's commits)"
        typer.echo(
            f"removed the worktree of run {item['run_id']}" + (kept if item["branch_kept"] else "")
        )


def _removed_words(removed: list[dict[str, Any]]) -> str:
    if not removed:
        return " (its worktree was gone already)"
    return f": {len(removed)} worktree(s) and their branches removed"
