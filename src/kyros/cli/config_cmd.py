"""`kyros config …`: the effective settings and where each came from."""

from __future__ import annotations

from typing import Annotated

import typer

from kyros.cli.state import group, print_json, settings

app = group("Inspect configuration.")


@app.command("show")
def show(
    json_out: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
) -> None:
    """Effective settings with their source; secrets are never printed."""
    loaded = settings()
    entries = loaded.entries()
    if json_out:
        print_json(
            {"entries": entries, "paths": {k: str(v) for k, v in vars(loaded.paths).items()}}
        )
        return
    from rich.table import Table

    from kyros.cli.state import stdout_console

    table = Table(box=None, header_style="bold")
    for column in ("KEY", "VALUE", "SOURCE"):
        table.add_column(column)
    for e in entries:
        table.add_row(e["key"], "" if e["value"] is None else str(e["value"]), e["source"])
    stdout_console().print(table)
    stdout_console().print(f"[dim]config file: {loaded.paths.config_file}[/dim]")
