"""`kyros run KIND …`: start a run and follow it to the end (or detach); answer and apply runs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from kyros.cli.follow import follow, show_result
from kyros.cli.state import group, print_json
from kyros.errors import ExitCode

app = group("Start a run (plan, implement, critic, pipeline); approve, deny or apply one.")

Goal = Annotated[
    str,
    typer.Argument(metavar="GOAL", help="What you want done, or '-' to read it from stdin."),
]
Workspace = Annotated[
    Path,
    typer.Option(
        "--workspace", "-w", help="Directory to work in.", show_default="current directory"
    ),
]
Model = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        help="Model: a litellm id (openai/gpt-4.1-mini, anthropic/…), openai/NAME with "
        "--api-base, or 'demo' (scripted, no key). Default: the agent's, then the configured one.",
        show_default=False,
    ),
]
ApiBase = Annotated[
    str | None,
    typer.Option(
        "--api-base",
        help="Base URL of an OpenAI-compatible server (Ollama, vLLM, LM Studio, a gateway).",
        show_default=False,
    ),
]
Agent = Annotated[
    str | None,
    typer.Option(
        "--agent", "-a", help="Agent to run as (`kyros agents list`).", show_default=False
    ),
]
Continue = Annotated[
    str | None,
    typer.Option("--continue", help="Continue the conversation of this run.", show_default=False),
]
Budget = Annotated[
    float | None,
    typer.Option("--budget", min=0, help="Spending cap for this run in USD.", show_default=False),
]
Detach = Annotated[
    bool,
    typer.Option(
        "--detach", "-d", help="Print the run id and return; the run goes on in the daemon."
    ),
]
JsonOut = Annotated[
    bool, typer.Option("--json", help="Print the finished run as one JSON document.")
]
Jsonl = Annotated[
    bool, typer.Option("--jsonl", help="Print events as JSON lines while the run works.")
]
RunArg = Annotated[str, typer.Argument(metavar="RUN", help="Run id.")]
FailUnder = Annotated[
    int | None,
    typer.Option(
        "--fail-under",
        min=0,
        max=100,
        help="Exit 1 if the critic's score is below N (for CI).",
        show_default=False,
    ),
]


def _read_goal(goal: str) -> str:
    if goal != "-":
        return goal
    if sys.stdin.isatty():
        sys.stderr.write("kyros: reading the goal from stdin (end with Ctrl-D)\n")
    text = sys.stdin.read().strip()
    if not text:
        raise typer.BadParameter("the goal read from stdin is empty", param_hint="GOAL")
    return text


def _workspace(workspace: Path) -> Path:
    root = workspace.expanduser().resolve()
    if not root.is_dir():
        raise typer.BadParameter(f"{workspace} is not a directory", param_hint="--workspace")
    return root


def _start(
    kind: str,
    body: dict[str, Any],
    *,
    root: Path,
    detach: bool,
    json_out: bool,
    jsonl: bool,
    fail_under: int | None = None,
) -> None:
    """Create the run, then follow it (or detach) and exit with its outcome's code."""
    if json_out and jsonl:
        raise typer.BadParameter("choose one of --json and --jsonl")
    from kyros.cli.daemon_sync import sync_keys
    from kyros.cli.state import client, settings

    loaded = settings(workspace=root)
    if loaded.project is not None and not loaded.project.trusted:
        sys.stderr.write(f"kyros: note: {loaded.project.path} is {loaded.project.hint}\n")
    c = sync_keys(loaded, client(loaded))
    # What this shell and a trusted project file choose: the daemon reads neither (ADR 0017).
    body = {**body, "settings": loaded.run_choices() or None}
    run = c.create_run(kind, {k: v for k, v in body.items() if v is not None})
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
            c, run, jsonl=jsonl, quiet=json_out, reconnect=loaded.reconnect_seconds, loaded=loaded
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
    code = exit_code(final, fail_under)
    if code == ExitCode.RUN_FAILED and final["status"] == "succeeded":
        score = ((final.get("output") or {}).get("assessment") or {}).get("score")
        sys.stderr.write(f"kyros: the review scored {score}, below --fail-under {fail_under}\n")
    raise typer.Exit(code)


def exit_code(run: dict[str, Any], fail_under: int | None = None) -> int:
    """A run's outcome as the process exit code (a critic's score can fail it)."""
    if run["status"] == "needs_approval":
        return ExitCode.NEEDS_APPROVAL
    if run["status"] != "succeeded":
        return ExitCode.RUN_FAILED
    if fail_under is not None:
        assessment = (run.get("output") or {}).get("assessment") or {}
        if int(assessment.get("score", 0)) < fail_under:
            return ExitCode.RUN_FAILED
    return ExitCode.OK


def _start_goal(
    kind: str,
    goal: str,
    workspace: Path,
    *,
    model: str | None,
    api_base: str | None,
    agent: str | None,
    continue_run: str | None,
    budget: float | None,
    detach: bool,
    json_out: bool,
    jsonl: bool,
) -> None:
    """Start a run that takes a goal and only the common options: plan, a plugin's kind."""
    root = _workspace(workspace)
    body = {
        "goal": _read_goal(goal),
        "workspace": str(root),
        "model": model,
        "api_base": api_base,
        "agent": agent,
        "continue_run": continue_run,
        "budget": budget,
    }
    _start(kind, body, root=root, detach=detach, json_out=json_out, jsonl=jsonl)


@app.command("plan")
def plan(
    goal: Goal,
    workspace: Workspace = Path("."),
    model: Model = None,
    api_base: ApiBase = None,
    agent: Agent = None,
    continue_run: Continue = None,
    budget: Budget = None,
    detach: Detach = False,
    json_out: JsonOut = False,
    jsonl: Jsonl = False,
) -> None:
    """Plan a change: reads the workspace, asks the planner model, prints a structured plan.

    Exit codes (every `run` command): 0 succeeded, 1 failed or cancelled, 2 bad usage or no
    model configured, 3 daemon unreachable, 4 auth, 5 waiting for approval, 70 internal error.

    Examples:

      kyros run plan "add a --verbose flag"

      echo "split the parser module" | kyros run plan - --json | jq .output.plan.steps

      kyros run plan "…" --model openai/qwen2.5-coder --api-base http://127.0.0.1:11434/v1
    """
    _start_goal(
        "plan",
        goal,
        workspace,
        model=model,
        api_base=api_base,
        agent=agent,
        continue_run=continue_run,
        budget=budget,
        detach=detach,
        json_out=json_out,
        jsonl=jsonl,
    )


@app.command("implement")
def implement(
    goal: Goal,
    workspace: Workspace = Path("."),
    plan_run: Annotated[
        str | None,
        typer.Option("--plan", help="Follow the plan of this plan run.", show_default=False),
    ] = None,
    model: Model = None,
    api_base: ApiBase = None,
    agent: Agent = None,
    continue_run: Continue = None,
    budget: Budget = None,
    detach: Detach = False,
    json_out: JsonOut = False,
    jsonl: Jsonl = False,
) -> None:
    """Change the code: an agent with file and shell tools works in a git worktree on branch
    kyros/RUN (a copy outside git) — never in your checkout. The result is a diff:
    `kyros runs diff RUN` shows it, `kyros run apply RUN` brings it into your tree.

    Examples:

      kyros run implement "make test_parse pass"

      kyros run implement "do it" --plan r_0123 --agent careful
    """
    root = _workspace(workspace)
    body = {
        "goal": _read_goal(goal),
        "workspace": str(root),
        "model": model,
        "api_base": api_base,
        "agent": agent,
        "plan_run": plan_run,
        "continue_run": continue_run,
        "budget": budget,
    }
    _start("implement", body, root=root, detach=detach, json_out=json_out, jsonl=jsonl)


@app.command("critic")
def critic(
    run: Annotated[
        str | None, typer.Option("--run", help="Review this run's diff.", show_default=False)
    ] = None,
    diff: Annotated[
        Path | None,
        typer.Option("--diff", help="Review this diff file ('-' for stdin).", show_default=False),
    ] = None,
    range_: Annotated[
        str | None,
        typer.Option(
            "--range", help="Review a git range A..B of the workspace.", show_default=False
        ),
    ] = None,
    goal: Annotated[
        str, typer.Option("--goal", help="What the change was meant to do.")
    ] = "Review this change.",
    fail_under: FailUnder = None,
    workspace: Workspace = Path("."),
    model: Model = None,
    api_base: ApiBase = None,
    agent: Agent = None,
    continue_run: Continue = None,
    detach: Detach = False,
    json_out: JsonOut = False,
    jsonl: Jsonl = False,
) -> None:
    """Review a change with a second model (by default one of another provider family than the
    implementer's, when one is configured) and store a quality assessment: a score 0-100, a
    verdict (pass, revise, fail) and findings.

    Examples:

      kyros run critic --run r_0123

      git diff main | kyros run critic --diff - --fail-under 70
    """
    chosen = [x for x in (run, diff, range_) if x is not None]
    if len(chosen) != 1:
        raise typer.BadParameter("give exactly one of --run, --diff, --range")
    text = None
    if diff is not None:
        text = sys.stdin.read() if str(diff) == "-" else _read_file(diff)
    root = _workspace(workspace)
    body = {
        "goal": goal,
        "workspace": str(root),
        "model": model,
        "api_base": api_base,
        "agent": agent,
        "target_run": run,
        "diff": text,
        "range": range_,
        "continue_run": continue_run,
    }
    _start(
        "critic",
        body,
        root=root,
        detach=detach,
        json_out=json_out,
        jsonl=jsonl,
        fail_under=fail_under,
    )


def _read_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise typer.BadParameter(f"cannot read {path}: {exc}", param_hint="--diff") from None


@app.command("pipeline")
def pipeline(
    goal: Goal,
    workspace: Workspace = Path("."),
    until: Annotated[
        str | None,
        typer.Option(
            "--until", help="Stop after this stage: plan, implement or critic.", show_default=False
        ),
    ] = None,
    fail_under: FailUnder = None,
    model: Model = None,
    api_base: ApiBase = None,
    agent: Agent = None,
    continue_run: Continue = None,
    budget: Budget = None,
    detach: Detach = False,
    json_out: JsonOut = False,
    jsonl: Jsonl = False,
) -> None:
    """Plan, implement, then gate on a critic's review — revising with the findings, trying a
    stronger model, then asking a human, as the implementer agent's escalation policy says.
    Each stage uses its own role's model ([roles.plan], [roles.implement], [roles.critic])
    unless --model names one for the plan and implement stages.

    Exit code: 0 when the change passed (or a human accepted it), 1 when it failed or its final
    review scored below --fail-under, 5 while it waits for a human.

    Example:

      kyros run pipeline "make the failing test pass" --fail-under 80 && kyros run apply RUN
    """
    if until is not None and until not in ("plan", "implement", "critic"):
        raise typer.BadParameter("must be plan, implement or critic", param_hint="--until")
    if fail_under is not None and until not in (None, "critic"):
        raise typer.BadParameter(
            f"--fail-under needs the critic stage; --until {until} stops before it",
            param_hint="--fail-under",
        )
    root = _workspace(workspace)
    body = {
        "goal": _read_goal(goal),
        "workspace": str(root),
        "model": model,
        "api_base": api_base,
        "agent": agent,
        "until": until,
        "continue_run": continue_run,
        "budget": budget,
    }
    _start(
        "pipeline",
        body,
        root=root,
        detach=detach,
        json_out=json_out,
        jsonl=jsonl,
        fail_under=fail_under,
    )


def _answer(run_id: str, approve: bool, always: bool, reason: str | None, json_out: bool) -> None:
    from kyros.cli.state import client

    run = client().approve(run_id, approve=approve, always=always, reason=reason)
    if json_out:
        print_json(run)
    else:
        verb = "approved" if approve else "denied"
        typer.echo(f"{run['id']}: {verb}; the run goes on ({run['status']})")


@app.command("approve")
def approve(
    run_id: RunArg,
    always: Annotated[
        bool,
        typer.Option("--always", help="Also approve every later action of this kind in the run."),
    ] = False,
    reason: Annotated[str | None, typer.Option("--reason", help="A note for the record.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the run as JSON.")] = False,
) -> None:
    """Approve the action a run waits on (`kyros runs show RUN` shows it)."""
    _answer(run_id, True, always, reason, json_out)


@app.command("deny")
def deny(
    run_id: RunArg,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Told to the model, so it can adapt.")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the run as JSON.")] = False,
) -> None:
    """Deny the action a run waits on; the model is told and goes on (or ends cleanly)."""
    _answer(run_id, False, False, reason, json_out)


@app.command("apply")
def apply(
    run_id: RunArg,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Bring an implement run's change (a pipeline's latest) into your working tree.

    Refuses, changing nothing, when a file the change touches has uncommitted edits or the
    change no longer applies.
    """
    from kyros.cli.state import client

    result = client().apply(run_id)
    if json_out:
        print_json(result)
    else:
        from kyros.sanitize import clean_text

        summary = f"applied run {result['run_id']} to {result['workspace']}: {result['summary']}"
        typer.echo(clean_text(summary))


@app.command("custom")
def custom(
    kind: Annotated[
        str,
        typer.Argument(
            metavar="KIND", help="A run kind a plugin added (see the `plugins` setting)."
        ),
    ],
    goal: Goal,
    workspace: Workspace = Path("."),
    model: Model = None,
    api_base: ApiBase = None,
    agent: Agent = None,
    continue_run: Continue = None,
    budget: Budget = None,
    detach: Detach = False,
    json_out: JsonOut = False,
    jsonl: Jsonl = False,
) -> None:
    """Start a run of a kind a plugin added, followed like any other run.

    An unknown kind is refused (exit 2) with the list of the daemon's kinds.

    Example:

      kyros run custom summarize "what does this repository do?"
    """
    _start_goal(
        kind,
        goal,
        workspace,
        model=model,
        api_base=api_base,
        agent=agent,
        continue_run=continue_run,
        budget=budget,
        detach=detach,
        json_out=json_out,
        jsonl=jsonl,
    )
