"""`kyros config …`: the effective settings, where each came from, and what the daemon uses."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from kyros.cli.state import group, print_json, settings

if TYPE_CHECKING:
    from kyros.client.api import Client
    from kyros.settings import Loaded

app = group("Inspect configuration.")

#: Settings only clients read: the daemon's value of them means nothing to this shell.
CLIENT_KEYS = frozenset({"daemon", "token", "detach_key", "reconnect_seconds"})


def _daemon_side(loaded: Loaded) -> tuple[Client | None, list[dict[str, Any]], dict[str, Any]]:
    """The daemon's settings and its view, or nothing when no daemon answers (never starts
    one: showing settings must not change what runs)."""
    from kyros.cli.state import client
    from kyros.errors import DaemonUnreachable, NotFound, UsageError

    try:
        c = client(loaded, autostart=False, timeout=5)
        entries = c.config()
    except DaemonUnreachable:
        return None, [], {}
    except UsageError as exc:
        if exc.code != "bad_daemon_address":
            raise
        # The settings are what is being checked: show them, and what is wrong with the address.
        return None, [], {"problem": exc.message}
    try:
        view = c.daemon()
    except NotFound:  # a daemon of an older kyros
        view = {}
    return c, entries, view


def _compare(
    loaded: Loaded, mine: dict[str, Any], theirs: dict[str, Any] | None
) -> dict[str, Any] | None:
    """What the daemon uses for one setting, next to what this shell sees."""
    from kyros.settings import RUN_KEYS

    key = mine["key"]
    if theirs is None:
        return None
    sent = key in RUN_KEYS and key in loaded.run_choices()
    words: str
    if key in CLIENT_KEYS:
        words = "(client setting)"
    elif sent:
        words = "sent with each run"
        if theirs["value"] != mine["value"]:
            words += f" (daemon's own: {_text(theirs['value'])})"
    elif theirs["value"] == mine["value"] and theirs.get("pending") is None:
        words = "same"
    else:
        words = f"{_text(theirs['value'])} ({theirs['source']})"
        if theirs.get("pending") is not None:
            words += f"; {_text(theirs['pending'])} after `kyros daemon restart`"
        elif mine["source"].startswith("env "):
            words += "; `kyros daemon restart` from this shell hands it yours"
    return {
        "value": theirs["value"],
        "source": theirs["source"],
        "pending": theirs.get("pending"),
        "sent_with_runs": sent,
        "words": words,
    }


def _text(value: Any) -> str:
    return "-" if value is None else str(value)


@app.command("show")
def show(
    workspace: Annotated[
        Path,
        typer.Option(
            "--workspace",
            "-w",
            help="Project whose .kyros.toml to show.",
            show_default="current directory",
        ),
    ] = Path("."),
    json_out: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
) -> None:
    """Effective settings with their source, what the running daemon uses beside them, and the
    project's .kyros.toml with its trust state; secrets are never printed.

    Runs started from this shell carry its `model` and `api_base` (from KYROS_* variables or a
    trusted project file); every other setting is the daemon's own: its config file, re-read
    when it changes, and the environment it was started with.
    """
    from kyros.client.lifecycle import key_problems, problem_words, started_words

    loaded = settings(workspace=workspace.expanduser())
    entries = loaded.entries()
    c, daemon_entries, view = _daemon_side(loaded)
    theirs = {e["key"]: e for e in daemon_entries}
    for e in entries:
        e["daemon"] = _compare(loaded, e, theirs.get(e["key"])) if c is not None else None
    problems = []
    if c is not None and c.target.local and view.get("key_salt"):
        problems = [problem_words(view, p) for p in key_problems(view, loaded.provider_keys)]
    project = loaded.project
    if json_out:
        print_json(
            {
                "entries": entries,
                "paths": {k: str(v) for k, v in vars(loaded.paths).items()},
                "project": None
                if project is None
                else {"path": str(project.path), "trusted": project.trusted, "hint": project.hint},
                "daemon": {"target": c.target.describe(), **view} if c is not None else None,
                "key_problems": problems,
            }
        )
        return
    from rich.markup import escape
    from rich.table import Table

    from kyros.cli.state import stdout_console
    from kyros.sanitize import one_line

    console = stdout_console()
    table = Table(box=None, header_style="bold")
    columns = ["KEY", "VALUE", "SOURCE"] + (["DAEMON"] if c is not None else [])
    for column in columns:
        table.add_column(column)
    for e in entries:
        row = [e["key"], _text(e["value"]) if e["value"] is not None else "", e["source"]]
        if c is not None:
            row.append(e["daemon"]["words"] if e["daemon"] else "-")
        table.add_row(*(escape(one_line(cell)) for cell in row))
    console.print(table)
    console.print(f"[dim]config file: {escape(str(loaded.paths.config_file))}[/dim]")
    if project is None:
        where = escape(str(workspace.expanduser().resolve()))
        console.print(f"[dim]project file: no .kyros.toml at or above {where}[/dim]")
    elif project.trusted:
        console.print(f"project file: {escape(str(project.path))} — {escape(project.hint)}")
    else:
        console.print(
            f"[yellow]project file: {escape(str(project.path))} — {escape(project.hint)}[/yellow]"
        )
    if c is None:
        if view.get("problem"):
            console.print(f"[red]daemon: {escape(view['problem'])}[/red]")
        else:
            console.print("daemon: not running; the next command starts one with these settings")
        return
    line = f"daemon: {started_words(view) if view else 'running'} at {c.target.describe()}"
    if view:
        line += f"; {view['activity']}"
    console.print(escape(line))
    if view.get("config_error"):
        console.print(f"[red]daemon: {escape(view['config_error'])}[/red]")
    if view.get("restart_needed"):
        console.print(
            f"[yellow]daemon: {escape(', '.join(view['restart_needed']))} changed in the config "
            "file; `kyros daemon restart` applies them[/yellow]"
        )
    for problem in problems:
        console.print(f"[yellow]{escape(problem)}[/yellow]")
