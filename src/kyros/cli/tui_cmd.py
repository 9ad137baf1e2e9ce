"""`kyros tui`: the console (runs, agents, approvals, a run's detail, live).

A single command, loaded lazily like the command groups; textual is imported only when it
runs, so `kyros --help` and completion never pay for it.
"""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(
    add_completion=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.command("tui")
def tui(
    daemon: Annotated[
        str | None,
        typer.Option(
            "--daemon",
            help="Daemon address: unix:///path.sock or http(s)://host:port [env KYROS_DAEMON]",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Open the console: runs, agents and approvals live, a run's events, plan and diff.

    Starts a local daemon if none answers. Runs go on in the daemon after you quit (ctrl+q);
    `?` in the console lists the keys, ctrl+p the commands.
    """
    from kyros.cli.state import GLOBALS, settings
    from kyros.tui.launch import run  # textual: ~0.2 s, paid only here

    code = run(settings(), daemon or GLOBALS.daemon, GLOBALS.token)
    if code:
        raise typer.Exit(code)
