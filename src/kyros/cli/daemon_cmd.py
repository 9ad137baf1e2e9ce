"""`kyros daemon …`: run the daemon in the foreground, or manage a background one."""

from __future__ import annotations

import sys
import time
from typing import Annotated, Any

import typer

from kyros.cli.state import group, print_json, settings

app = group("Run or manage the kyros daemon.")

JsonOpt = Annotated[bool, typer.Option("--json", help="One JSON document.")]


@app.command("serve")
def serve(
    listen: Annotated[
        str | None,
        typer.Option(
            "--listen",
            help="Also listen on TCP HOST:PORT (always needs the bearer token).",
            show_default=False,
        ),
    ] = None,
    tls_cert: Annotated[
        str | None, typer.Option("--tls-cert", help="TLS certificate for TCP.", show_default=False)
    ] = None,
    tls_key: Annotated[
        str | None, typer.Option("--tls-key", help="TLS key for TCP.", show_default=False)
    ] = None,
    insecure_no_tls: Annotated[
        bool, typer.Option("--insecure-no-tls", help="Allow plain TCP on a non-loopback address.")
    ] = False,
    workers: Annotated[
        int | None,
        typer.Option("--workers", min=1, max=256, help="Concurrent jobs.", show_default=False),
    ] = None,
    autostarted: Annotated[
        bool,
        typer.Option(
            "--autostarted",
            hidden=True,
            help="Started in the background by a client, which may restart it while idle.",
        ),
    ] = False,
    role: Annotated[
        str | None,
        typer.Option(
            "--role",
            metavar="all|api|worker",
            help="all: serve clients and run jobs (default); api: serve clients, run no jobs; "
            "worker: run jobs, serve only health and the registry [setting node_role].",
            show_default=False,
        ),
    ] = None,
    node_id: Annotated[
        str | None,
        typer.Option(
            "--node-id",
            help="This daemon's id in the service registry [setting node_id].",
            show_default=False,
        ),
    ] = None,
    allow_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-host",
            help="A host name or IP address TCP clients may reach the daemon by (repeatable; "
            "adds to the allowed_hosts setting).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run the daemon in the foreground (Ctrl-C or SIGTERM stops it cleanly)."""
    from kyros.daemon.server import TcpOptions, parse_listen
    from kyros.daemon.server import serve as run_server

    loaded = settings(
        {
            "workers": workers,
            "allowed_hosts": _allowed_hosts(allow_host),
            "node_role": role,
            "node_id": node_id,
        }
    )
    tcp = None
    if listen:
        host, port = parse_listen(listen)
        tcp = TcpOptions(
            host=host, port=port, tls_cert=tls_cert, tls_key=tls_key, allow_insecure=insecure_no_tls
        )
    run_server(loaded, tcp, autostarted=autostarted)


def _allowed_hosts(flags: list[str] | None) -> list[str] | None:
    """``--allow-host`` values added to the ``allowed_hosts`` setting (None: the setting alone)."""
    if not flags:
        return None
    configured = settings().raw.get("allowed_hosts") or []
    if isinstance(configured, str):  # KYROS_ALLOWED_HOSTS=a,b
        configured = [h.strip() for h in configured.split(",") if h.strip()]
    return [*configured, *flags]


@app.command("start")
def start(json_out: JsonOpt = False) -> None:
    """Start a background daemon (if none runs) and wait until it is ready."""
    from kyros.cli.state import client

    c = client(timeout=10)
    health = c.health()
    if json_out:
        print_json(health)
    else:
        typer.echo(f"kyros daemon {health['version']} running (pid {health['pid']})")


@app.command("stop")
def stop(
    timeout: Annotated[float, typer.Option(help="Seconds to wait for running jobs.")] = 20.0,
) -> None:
    """Stop the local background daemon; running jobs finish or go back to the queue."""
    from kyros.client.lifecycle import stop_local

    pid = stop_local(settings(), timeout)
    if pid is None:
        typer.echo("no local kyros daemon is running")
    else:
        typer.echo(f"stopped kyros daemon (pid {pid})")


@app.command("restart")
def restart(
    timeout: Annotated[float, typer.Option(help="Seconds to wait for running jobs.")] = 20.0,
    json_out: JsonOpt = False,
) -> None:
    """Stop the local daemon and start a new one in the background with this shell's
    environment: the way to hand it provider keys or KYROS_* settings exported since it started.

    Running jobs finish or go back to the queue, and the new daemon takes them up; terminals
    the daemon owns end.
    """
    from kyros.cli.state import GLOBALS
    from kyros.client.lifecycle import restart_local

    old, c = restart_local(settings(), GLOBALS.daemon, GLOBALS.token, timeout)
    health = c.health()
    if json_out:
        print_json({"stopped_pid": old, **health})
        return
    before = f"stopped pid {old}; " if old is not None else ""
    typer.echo(f"kyros daemon {health['version']} restarted ({before}now pid {health['pid']})")


@app.command("status")
def status(json_out: JsonOpt = False) -> None:
    """Whether the daemon answers, and its readiness checks. Exit 3 if it does not answer."""
    from kyros.cli.state import client

    c = client(autostart=False, timeout=5)
    health, ready = c.health(), c.ready()
    if json_out:
        print_json({"health": health, "ready": ready, "target": c.target.describe()})
        return
    typer.echo(
        f"kyros daemon {health['version']} (API v{health['api_version']}, pid "
        f"{health['pid']}) at {c.target.describe()}: "
        f"{'ready' if ready.get('ready') else 'NOT ready'}"
    )
    if health.get("node"):
        typer.echo(f"  node {health['node']}, role {health.get('role')}")
    for name, check in ready.get("checks", {}).items():
        typer.echo(f"  {'ok ' if check['ok'] else 'BAD'} {name}: {check['detail']}")
    tcp = health.get("tcp")
    if tcp:
        typer.echo(f"  TCP {tcp['listen']}, answering to: {', '.join(tcp['allowed_hosts'])}")


@app.command("logs")
def logs(
    lines: Annotated[int, typer.Option("-n", "--lines", min=1, help="Lines to show.")] = 50,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines.")
    ] = False,
) -> None:
    """The background daemon's log."""
    path = settings().paths.log_file
    if not path.exists():
        typer.echo(f"no daemon log yet at {path}")
        return
    with path.open("r", errors="replace") as fh:
        for line in fh.readlines()[-lines:]:
            sys.stdout.write(line)
        while follow:
            line = fh.readline()
            if line:
                sys.stdout.write(line)
                sys.stdout.flush()
            else:
                time.sleep(0.2)


@app.command("token")
def token(
    rotate: Annotated[
        bool,
        typer.Option(
            "--rotate", help="Replace the token; clients using the old one are refused from now on."
        ),
    ] = False,
) -> None:
    """Print the bearer token for TCP clients (creating one if needed), or rotate it.

    It is this machine's token: for a daemon elsewhere (--daemon, KYROS_DAEMON), run it there.
    """
    from kyros import tokens

    loaded = settings()
    _refuse_remote(loaded)
    paths = loaded.paths
    current = tokens.read_local_token(paths)
    if rotate or current is None or not paths.token_hash_file.exists():
        current = tokens.generate()
        tokens.install(paths, current)
        sys.stderr.write("kyros: new daemon token installed; a running daemon uses it at once\n")
    typer.echo(current)


def _refuse_remote(loaded: Any) -> None:
    """A token made here would not be the remote daemon's: it would be sent and refused."""
    from urllib.parse import urlsplit

    from kyros.cli.state import GLOBALS
    from kyros.client.discovery import resolve_target
    from kyros.errors import UsageError

    target = resolve_target(loaded, GLOBALS.daemon, GLOBALS.token)
    if target.uds:
        return
    host = urlsplit(target.base_url).hostname or ""
    if host in ("127.0.0.1", "localhost", "::1"):
        return
    raise UsageError(
        f"the daemon at {target.base_url} ({target.source}) is on another machine: its token "
        "is there, and a token made here would only be refused",
        code="remote_token",
        hint=f"on {host}, run `kyros daemon token`; pass what it prints here with --token "
        "or KYROS_TOKEN",
    )
