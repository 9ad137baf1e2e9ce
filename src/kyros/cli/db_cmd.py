"""`kyros db …`: migrate and inspect the store directly (the daemon migrates at start too)."""

from __future__ import annotations

from typing import Annotated

import typer

from kyros.cli.state import group, print_json, settings

app = group("Store migrations.")

JsonOpt = Annotated[bool, typer.Option("--json", help="One JSON document.")]


@app.command("upgrade")
def upgrade(json_out: JsonOpt = False) -> None:
    """Apply pending migrations to the configured database."""
    from kyros.daemon.admin import db_upgrade  # deferred: alembic + SQLAlchemy cost ~0.5 s

    loaded = settings()
    status = db_upgrade(loaded)
    if json_out:
        print_json(
            {"current": status.current, "head": status.head, "up_to_date": status.up_to_date}
        )
    else:
        typer.echo(f"database at revision {status.current} (newest {status.head})")


@app.command("status")
def status(json_out: JsonOpt = False) -> None:
    """The database's revision and whether migrations are pending."""
    from kyros.daemon.admin import db_status
    from kyros.settings import redact_url

    loaded = settings()
    st = db_status(loaded)
    if json_out:
        print_json(
            {
                "url": redact_url(loaded.database_url),
                "current": st.current,
                "head": st.head,
                "up_to_date": st.up_to_date,
            }
        )
        return
    typer.echo(f"database: {redact_url(loaded.database_url)}")
    typer.echo(
        f"revision: {st.current or '(empty)'}; newest: {st.head}"
        + ("" if st.up_to_date else " — run `kyros db upgrade`")
    )
