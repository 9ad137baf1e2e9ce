"""`kyros threads …`: the conversations runs share (`--continue RUN`), with their runs."""

from __future__ import annotations

from typing import Annotated

import typer

from kyros.cli.state import client, group, print_json

app = group("Conversations runs share (--continue): ls, show.")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]


@app.command("ls")
def ls(
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many.")] = 20,
    json_out: JsonOpt = False,
) -> None:
    """Conversations, the most recently active first, with their runs."""
    found = client().threads(limit=limit)
    if json_out:
        print_json(found)
        return
    from kyros.cli.table import print_table
    from kyros.sanitize import one_line

    rows = []
    for t in found:
        title = " ".join(one_line(t.get("title") or "").split())  # cleaned, then cut
        runs = " ".join(f"{r['id']}({r['kind']})" for r in t["runs"] if not r.get("parent_id"))
        rows.append(
            (
                t["id"],
                t["active_at"][:19].replace("T", " "),
                str(t["messages_count"]),
                runs or "-",
                title[:50] + ("…" if len(title) > 50 else ""),
            )
        )
    print_table(("THREAD", "ACTIVE", "MESSAGES", "RUNS", "TITLE"), rows)


@app.command("show")
def show(
    ref: Annotated[str, typer.Argument(metavar="THREAD", help="Thread id, or one of its runs.")],
    json_out: JsonOpt = False,
) -> None:
    """One conversation: its runs in order, then its messages (summaries marked)."""
    thread = client().thread(ref)
    if json_out:
        print_json(thread)
        return
    typer.echo(f"{thread['id']}  {thread['messages_count']} messages  {thread.get('title') or ''}")
    for run in thread["runs"]:
        stage = f" (stage of {run['parent_id']})" if run.get("parent_id") else ""
        typer.echo(f"  run {run['id']}  {run['kind']:<9} {run['status']:<10} {run['goal']}{stage}")
    for m in thread["messages"]:
        text = " ".join(m["content"].split())
        more = "…" if m["truncated"] or len(text) > 100 else ""
        covers = f" (covers up to #{m['meta'].get('upto')})" if m["role"] == "summary" else ""
        typer.echo(
            f"  #{m['id']:<5} {m['role']:<9} {m.get('run_id') or '':<16} {text[:100]}{more}{covers}"
        )
