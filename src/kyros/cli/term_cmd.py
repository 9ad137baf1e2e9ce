"""`kyros term …`: terminals owned by the daemon — new, ls, attach, send, kill, logs.

Every command takes a session's id or its name.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from kyros.cli.state import client, group, print_json, settings
from kyros.cli.table import PlainOpt, print_table
from kyros.sanitize import clean_text, one_line
from kyros.settings import detach_key_byte

if TYPE_CHECKING:
    from kyros.client.discovery import DaemonTarget

app = group("Terminals owned by the daemon: new, ls, attach, send, kill, logs.")

Ref = Annotated[str, typer.Argument(metavar="ID|NAME", help="A terminal's id or name.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]


def _status(t: dict[str, object]) -> str:
    if t["status"] == "running":
        return "running"
    if t.get("signal"):
        return f"killed by signal {t['signal']}"
    return f"exited {t.get('exit_code')}"


@app.command("new")
def new(
    command: Annotated[
        list[str] | None,
        typer.Argument(metavar="[CMD]...", help="Command to run; default your shell."),
    ] = None,
    cwd: Annotated[
        Path, typer.Option("--cwd", help="Working directory.", show_default="current directory")
    ] = Path("."),
    name: Annotated[
        str | None, typer.Option("--name", "-n", help="A name to use instead of the id.")
    ] = None,
    attach: Annotated[bool, typer.Option("--attach", "-a", help="Attach right away.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Start a terminal in the daemon; it lives on when this command (or any client) exits.

    Examples:

      kyros term new --name build -- make -j4

      kyros term new -a
    """
    from kyros.cli.term_attach import terminal_size

    root = cwd.expanduser().resolve()
    if not root.is_dir():
        raise typer.BadParameter(f"{cwd} is not a directory", param_hint="--cwd")
    rows, cols = terminal_size()
    body = {"command": command or None, "cwd": str(root), "name": name, "rows": rows, "cols": cols}
    c = client()
    term = c.create_terminal({k: v for k, v in body.items() if v is not None})
    if json_out:
        print_json(term)
    else:
        typer.echo(term["id"])
        label = f" ({term['name']})" if term.get("name") else ""
        sys.stderr.write(
            f"kyros: terminal {term['id']}{label} started: "
            f"`kyros term attach {term.get('name') or term['id']}`\n"
        )
    if attach:
        _attach(c.target, term["id"], _detach_key(None))


@app.command("ls")
def ls(json_out: JsonOpt = False, plain: PlainOpt = False) -> None:
    """Terminals of the daemon, running and recently exited."""
    terms = client().terminals()
    if json_out:
        print_json(terms)
        return
    print_table(
        ("ID", "NAME", "STATUS", "VIEWERS", "RUN", "COMMAND"),
        (
            (
                t["id"],
                t.get("name") or "",
                _status(t),
                str(t.get("viewers", 0)),
                t.get("run_id") or "",
                one_line(" ".join(map(str, t["command"])), 60),
            )
            for t in terms
        ),
        plain=plain,
    )


def _detach_key(value: str | None) -> bytes:
    """The byte of ``--detach-key``, or of the ``detach_key`` setting when it is not given."""
    if value is None:
        return detach_key_byte(settings().detach_key)  # checked when loaded
    try:
        return detach_key_byte(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--detach-key") from None


@app.command("attach")
def attach(
    ref: Ref,
    detach_key: Annotated[
        str | None,
        typer.Option(
            "--detach-key",
            help="Key that detaches, leaving the session running "
            "[default: the detach_key setting, ctrl-\\].",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Attach to a terminal like `tmux attach`: full-screen programs work, resizes follow, the
    detach key (Ctrl-\\ by default) leaves the session running. Exit code: the program's when
    it exits while attached, 0 on detach."""
    key = _detach_key(detach_key)
    c = client()
    term = c.terminal(ref)  # a clear 404 before any raw mode
    _attach(c.target, term["id"], key)


def _attach(target: DaemonTarget, term_id: str, key: bytes) -> None:
    from kyros.cli.term_attach import run_attach, terminal_size
    from kyros.client.attach import open_attach

    rows, cols = terminal_size()
    conn = open_attach(target, term_id, rows=rows, cols=cols)
    result = run_attach(conn, detach_key=key)
    if result.detached:
        sys.stderr.write(f"\r\nkyros: detached from {term_id}; it keeps running.\r\n")
        return
    if result.exit is not None:
        code = result.exit.get("code")
        sig = result.exit.get("signal")
        sys.stderr.write(
            f"\r\nkyros: {term_id} "
            + (f"was killed by signal {sig}" if sig else f"exited with status {code}")
            + "\r\n"
        )
        raise typer.Exit(int(code) if isinstance(code, int) else 1)


@app.command("send")
def send(
    ref: Ref,
    text: Annotated[str, typer.Argument(help="Text to type; '-' reads stdin.")],
    enter: Annotated[
        bool, typer.Option("--enter/--no-enter", help="Press Enter after the text.")
    ] = True,
) -> None:
    """Type text into a terminal without attaching."""
    data = sys.stdin.read() if text == "-" else text
    if enter and not data.endswith(("\n", "\r")):
        data += "\r"
    client().send_terminal(ref, data)


@app.command("kill")
def kill(ref: Ref, json_out: JsonOpt = False) -> None:
    """End a terminal's program (SIGTERM, then SIGKILL after a grace period)."""
    term = client().kill_terminal(ref)
    if json_out:
        print_json(term)
    else:
        typer.echo(clean_text(f"{term['id']}: {_status(term)}"))


@app.command("logs")
def logs(ref: Ref) -> None:
    """The terminal's scrollback as plain text (escape sequences rendered, not replayed)."""
    sys.stdout.write(clean_text(client().terminal_logs(ref)))
