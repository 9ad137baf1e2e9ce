"""The `kyros` entry point: the command tree and the one place errors become exit codes."""

from __future__ import annotations

import importlib
import sys
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from kyros import __version__
from kyros.cli.state import GLOBALS

#: Command groups, imported only when one of them runs (or for the reference docs): `kyros
#: --help` and every shell-completion request then load Typer and this module alone. A module
#: whose app has a single command and no callback (`usage`) is loaded the same way: Typer
#: turns such an app into that command itself, run as `kyros <name>`.
LAZY_GROUPS: dict[str, tuple[str, str]] = {
    "run": (
        "kyros.cli.run_cmd",
        "Start a run (plan, implement, critic, pipeline); approve, deny or apply one.",
    ),
    "runs": ("kyros.cli.runs_cmd", "List, inspect, follow, diff and cancel runs."),
    "agents": ("kyros.cli.agents_cmd", "List, inspect, add, edit and remove agents."),
    "threads": ("kyros.cli.threads_cmd", "Conversations runs share (--continue): ls, show."),
    "usage": ("kyros.cli.usage_cmd", "What model calls cost: by run, agent, model, day…"),
    "models": (
        "kyros.cli.models_cmd",
        "List the models kyros can use, inspect one, or test one with a tiny call.",
    ),
    "term": (
        "kyros.cli.term_cmd",
        "Terminals owned by the daemon: new, ls, attach, send, kill, logs.",
    ),
    "tui": (
        "kyros.cli.tui_cmd",
        "Open the console: runs, agents and approvals live, a run's events, plan and diff.",
    ),
    "daemon": ("kyros.cli.daemon_cmd", "Run or manage the kyros daemon."),
    "nodes": (
        "kyros.cli.nodes_cmd",
        "The daemons sharing the store (service registry): ls, show, drain.",
    ),
    "db": ("kyros.cli.db_cmd", "Store migrations."),
    "config": ("kyros.cli.config_cmd", "Inspect configuration."),
    "auth": ("kyros.cli.auth_cmd", "Store, list and remove provider API keys."),
}


class LazyGroup(TyperGroup):
    """The top-level group: lists the lazy groups with their one-line help, loads on use."""

    def list_commands(self, ctx: Any) -> list[str]:
        return [*LAZY_GROUPS, *(n for n in super().list_commands(ctx) if n not in LAZY_GROUPS)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name in LAZY_GROUPS and cmd_name not in self.commands:
            module = importlib.import_module(LAZY_GROUPS[cmd_name][0])
            group = typer.main.get_command(module.app)
            group.name = cmd_name
            self.commands[cmd_name] = group
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        rows = []
        for name in self.list_commands(ctx):
            if name in LAZY_GROUPS and name not in self.commands:
                rows.append((name, LAZY_GROUPS[name][1]))
            else:
                cmd = self.get_command(ctx, name)
                if cmd is not None and not cmd.hidden:
                    rows.append((name, cmd.get_short_help_str(formatter.width - 6 - len(name))))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


app = typer.Typer(
    cls=LazyGroup,
    name="kyros",
    help="Run AI coding agents from your terminal: plan, implement and review, on a daemon "
    "that keeps working when you close the terminal.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,  # errors are reported by run(); tracebacks only with --debug
    pretty_exceptions_show_locals=False,  # locals may hold secrets
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode=None,
)


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
    """Print the shell completion script for bash, zsh or fish.

    Add it to your shell's start-up file: kyros completion --shell bash >> ~/.bashrc
    (`--install-completion` detects the shell itself and ignores an argument; this does not.)
    """
    from typer._completion_shared import get_completion_script

    if shell not in ("bash", "zsh", "fish"):
        raise typer.BadParameter("choose bash, zsh or fish", param_hint="--shell")
    script = get_completion_script(prog_name="kyros", complete_var="_KYROS_COMPLETE", shell=shell)
    sys.stdout.write(script.rstrip("\n") + "\n")


def run() -> None:
    """Console-script entry: run the app; every failure is reported by ``kyros.cli.report``
    (text on stderr, a JSON document on stdout with ``--json``) and ends with its exit code."""
    try:
        code = app(standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        sys.stderr.write("kyros: interrupted\n")
        sys.exit(130)
    except Exception as exc:
        # Typer vendors click (typer._click); its usage errors derive from TyperException and
        # are the user's, like a KyrosError: reported, never a traceback. The reporter is
        # imported here, not above: `kyros --help` and every command that succeeds skip it.
        from kyros.cli.report import report
        from kyros.errors import KyrosError

        usage = isinstance(exc, typer.TyperException) and callable(getattr(exc, "show", None))
        if GLOBALS.debug and not usage and not isinstance(exc, KyrosError):
            raise
        if GLOBALS.debug and isinstance(exc, KyrosError):
            import traceback

            traceback.print_exc()
        sys.exit(report(exc, sys.argv[1:], debug=GLOBALS.debug))
