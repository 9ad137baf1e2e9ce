"""`kyros runs …`: list, inspect, follow, diff, cancel and discard runs; clean worktrees."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from kyros.cli.state import client, group, print_json, print_jsonl, settings
from kyros.cli.table import PlainOpt, print_table
from kyros.sanitize import clean_text, one_line

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
    plain: PlainOpt = False,
) -> None:
    """Runs, newest first. For the next page, pass the last id shown to --before (--json
    gives it as next_before)."""
    page = client().runs_page(status=status, kind=kind, limit=limit, before=before)
    if json_out:
        print_json(page)
        return
    print_table(
        ("ID", "KIND", "STATUS", "AGE", "COST", "GOAL"),
        (
            (
                run["id"],
                run["kind"],
                run["status"],
                _age(run["created_at"]),
                f"${run.get('cost') or 0:.4f}",
                one_line(run["goal"], 60),
            )
            for run in page["runs"]
        ),
        plain=plain,
    )
    if page["next_before"] and sys.stderr.isatty():
        sys.stderr.write(f"kyros: more: kyros runs list --before {page['next_before']}\n")


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

    say = _say
    say(f"{run['id']}  {run['kind']}  {run['status']}  model={run.get('model')}")
    say(f"goal: {run['goal']}")
    if run.get("node"):
        say(f"node: {run['node']}")
    choice = _choice_line(run)
    if choice:
        say(choice)
    usage = run.get("usage") or {}
    calls = f", {usage['calls']} model calls" if "calls" in usage else ""
    stages = " with its stages'" if run["children"] else ""
    say(
        f"cost so far{stages}: ${run.get('cost') or 0:.4f} "
        f"({run.get('tokens_in', 0)} tokens in, {run.get('tokens_out', 0)} out{calls})"
    )
    for child in run["children"]:
        say(
            f"  stage {child['kind']:<9} {child['id']}  {child['status']:<10} "
            f"${child.get('cost') or 0:.4f}  {child.get('model')}"
        )
        line = _choice_line(child)
        if line and "replaced" in line:
            say(f"    {line}")
    for a in run["assessments"]:
        say(
            f"  review {a.get('verdict')} {a.get('score')}/100 by {a.get('model')}: "
            f"{a.get('summary')}"
        )
    for step in run["escalations"]:
        say(f"  escalation {step.get('step')}: {step.get('action')} — {step.get('reason')}")
    for a in run.get("attempts") or []:
        alone = ", alone" if a["isolated"] else ""
        say(f"  attempt {a['attempt']} {a['outcome']}{alone}: {a.get('error') or ''}")
    if run["status"] in TERMINAL_STATUSES or run["status"] == "needs_approval":
        show_result(run)


def _choice_line(run: dict[str, Any]) -> str | None:
    """Which model the run uses, where, and why; a critic swap says what it replaced."""
    choice = (run.get("params") or {}).get("model_choice")
    if not choice:
        return None
    line = f"model {choice['model']} at {choice['server']} (chosen: {choice['reason']})"
    if choice["reason"] == "critic:other-vendor":
        was = choice.get("replaced") or "none configured"
        line += f"; replaced {was}, of the change's own vendor (setting critic_other_vendor)"
    return line


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

        # On a terminal the diff is shown, so it is sanitised; in a pipe it is data (git apply).
        shown = clean_text(text)
        stdout_console().print(Syntax(shown, "diff", theme="ansi_dark", background_color="default"))
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
    from kyros.cli.follow import reviver

    stream = c.events(
        run_id,
        after=after,
        follow=follow,
        reconnect_for=loaded.reconnect_seconds,
        revive=reviver(loaded) if c.target.local and follow else None,
    )
    if json_out:
        print_json(list(stream))
        return
    for event in stream:
        if jsonl:
            print_jsonl(event)
        else:
            typer.echo(_line(event))


def _say(text: str) -> None:
    """One line of a run's description: its parts came from users, models and files."""
    typer.echo(clean_text(text))


def _line(event: dict[str, Any]) -> str:
    data = event.get("data") or {}
    if event["type"] == "model.delta":
        summary = repr(data.get("text", ""))[:80]
    else:
        summary = one_line(" ".join(f"{k}={v}" for k, v in data.items() if k != "output"), 120)
    when = str(event.get("created_at") or "")[11:19]
    return one_line(f"{event['seq']:>5}  {when}  {event['type']:<18} {summary}")


@app.command("cancel")
def cancel(
    run_id: Annotated[str, typer.Argument(help="Run id.")], json_out: JsonOpt = False
) -> None:
    """Cancel a queued or running run."""
    run = client().cancel(run_id)
    if json_out:
        print_json(run)
    else:
        _say(
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
