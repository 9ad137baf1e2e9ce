"""The `kyros` entry point: the command tree and the one place errors become exit codes."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from kyros import __version__
from kyros.cli import config_cmd, daemon_cmd, db_cmd, run_cmd, runs_cmd
from kyros.cli.state import GLOBALS

app = typer.Typer(
    name="kyros",
    help="Run AI coding agents from your terminal: plan, implement and review, on a daemon "
    "that keeps working when you close the terminal.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,  # errors are reported by run(); tracebacks only with --debug
    pretty_exceptions_show_locals=False,  # locals may hold secrets
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode=None,
)
app.add_typer(run_cmd.app, name="run")
app.add_typer(runs_cmd.app, name="runs")
app.add_typer(daemon_cmd.app, name="daemon")
app.add_typer(db_cmd.app, name="db")
app.add_typer(config_cmd.app, name="config")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"kyros {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    daemon: Annotated[
        str | None,
        typer.Option(
            "--daemon",
            help="Daemon address: unix:///path.sock or http(s)://host:port [env KYROS_DAEMON]",
            show_default=False,
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            "--token", help="Bearer token for a TCP daemon [env KYROS_TOKEN]", show_default=False
        ),
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit.", callback=_version, is_eager=True
        ),
    ] = False,
) -> None:
    GLOBALS.daemon, GLOBALS.token, GLOBALS.debug = daemon, token, debug


@app.command("completion")
def completion(
    shell: Annotated[str, typer.Option("--shell", help="bash, zsh or fish")],
) -> None:
    """Print the shell completion script, e.g. `kyros completion --shell bash >> ~/.bashrc`.

    (`--install-completion` detects the shell itself and ignores an argument; this does not.)
    """
    from typer._completion_shared import get_completion_script

    if shell not in ("bash", "zsh", "fish"):
        raise typer.BadParameter("choose bash, zsh or fish", param_hint="--shell")
    script = get_completion_script(prog_name="kyros", complete_var="_KYROS_COMPLETE", shell=shell)
    sys.stdout.write(script.rstrip("\n") + "\n")


def run() -> None:
    """Console-script entry: run the app, turning kyros errors into messages and exit codes."""
    from kyros.errors import KyrosError

    try:
        code = app(standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except KyrosError as exc:
        if GLOBALS.debug:
            raise
        sys.stderr.write(f"kyros: error: {exc.message}\n")
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        sys.stderr.write("kyros: interrupted\n")
        sys.exit(130)
    except Exception as exc:
        # Typer vendors click (typer._click); its exceptions all derive from TyperException.
        show = getattr(exc, "show", None)
        if isinstance(exc, typer.TyperException) and callable(show):
            show()
            sys.exit(int(getattr(exc, "exit_code", 2)))
        if GLOBALS.debug:
            raise
        sys.stderr.write(
            f"kyros: internal error: {type(exc).__name__}: {exc}\n"
            "Run again with --debug for the traceback, and please report it.\n"
        )
        sys.exit(1)
