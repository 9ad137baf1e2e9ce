"""`kyros nodes …`: the daemons sharing the store (the service registry): ls, show, drain."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from kyros.cli.state import client, group, print_json
from kyros.cli.table import PlainOpt

app = group("The daemons sharing the store (service registry): ls, show, drain.")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]
NodeArg = Annotated[str, typer.Argument(metavar="NODE", help="Node id (see `kyros nodes ls`).")]


def _age(node: dict[str, Any]) -> str:
    return "-" if node["state"] == "down" else f"{node['heartbeat_age']:.1f}s"


@app.command("ls")
def ls(json_out: JsonOpt = False, plain: PlainOpt = False) -> None:
    """Every node that joined the store: role, state, load, last heartbeat, where it is."""
    found = client().nodes()
    if json_out:
        print_json(found)
        return
    from kyros.cli.table import print_table

    rows = [
        (
            n["id"],
            n["role"],
            n["state"],
            f"{n['load']}/{n['capacity']}",
            _age(n),
            f"{n['host']}:{n['pid']}",
            n["version"],
            n.get("url") or "-",
        )
        for n in found["nodes"]
    ]
    print_table(
        ("NODE", "ROLE", "STATE", "LOAD", "HEARTBEAT", "HOST:PID", "VERSION", "URL"),
        rows,
        plain=plain,
    )


def _print_node(n: dict[str, Any]) -> None:
    from kyros.sanitize import one_line

    caps = n["capabilities"]
    lines = [
        f"{n['id']}  {n['role']}  {n['state']}  load {n['load']}/{n['capacity']}",
        f"host {n['host']} pid {n['pid']}  kyros {n['version']} (API v{n['api_version']}, "
        f"schema {n['schema_revision']})  incarnation {n['incarnation']}",
        f"url: {n.get('url') or '-'}",
        f"started {n['started_at']}  last heartbeat {n['last_heartbeat']} ({_age(n)} ago)",
        f"models: {', '.join(caps['models']) or '-'}  providers: "
        f"{', '.join(caps['providers']) or '-'}",
        f"workspace roots: {', '.join(caps['workspace_roots']) or '-'}  sandbox: "
        f"{'yes' if caps['sandbox'] else 'no'}  terminals: {'yes' if caps['terminals'] else 'no'}",
    ]
    if n.get("reason"):
        lines.append(f"reason: {n['reason']}")
    for line in lines:
        typer.echo(one_line(line))


@app.command("show")
def show(node_id: NodeArg, json_out: JsonOpt = False) -> None:
    """One node with its capabilities. Exit 2 for an id no node ever had."""
    node = client().node(node_id)
    if json_out:
        print_json(node)
        return
    _print_node(node)


@app.command("drain")
def drain(node_id: NodeArg, json_out: JsonOpt = False) -> None:
    """Drain a node: it claims no new jobs and finishes the running ones (it learns it at its
    next heartbeat). A restart brings it back up."""
    node = client().drain_node(node_id)
    if json_out:
        print_json(node)
        return
    typer.echo(f"node {node['id']} is {node['state']}: it claims no new jobs")
