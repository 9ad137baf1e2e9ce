"""The console app, built by :func:`create_app` from a :class:`~kyros.tui.connection.Connection`
(a real daemon's, or an in-memory one for snapshot tests), and :func:`run` for `kyros tui`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from textual.app import App
from textual.binding import Binding

from kyros.settings import Loaded
from kyros.tui.commands import KyrosCommands
from kyros.tui.connection import Connection, open_connection
from kyros.tui.screens.main import MainScreen


class KyrosApp(App[int]):
    """kyros runs, agents and approvals, live; every daemon call off the UI thread."""

    CSS_PATH = "app.tcss"
    TITLE = "kyros"
    COMMANDS = App.COMMANDS | {KyrosCommands}
    BINDINGS = [Binding("ctrl+q", "quit", "Quit", priority=True)]

    def __init__(
        self,
        connection: Connection,
        *,
        cwd: Path,
        clock: Callable[[], datetime],
        poll_seconds: float = 1.0,
    ) -> None:
        super().__init__()
        self.connection = connection
        self._main = MainScreen(connection, cwd=cwd, clock=clock, poll_seconds=poll_seconds)

    def get_default_screen(self) -> MainScreen:
        return self._main

    @property
    def main(self) -> MainScreen:
        return self._main

    async def action_quit(self) -> None:
        self.connection.close()  # the workers' loops end now, not at their next poll
        self.exit(0)

    def on_unmount(self) -> None:
        self.connection.close()


def create_app(
    connection: Connection,
    *,
    cwd: Path | None = None,
    clock: Callable[[], datetime] | None = None,
    poll_seconds: float = 1.0,
) -> KyrosApp:
    """The console on ``connection``; ``cwd`` is the new-run form's default workspace and
    ``clock`` the "now" ages are counted from (fixed in snapshot tests)."""
    return KyrosApp(
        connection,
        cwd=cwd or Path.cwd(),
        clock=clock or (lambda: datetime.now(UTC)),
        poll_seconds=poll_seconds,
    )


def run(loaded: Loaded, daemon: str | None = None, token: str | None = None) -> int:
    """`kyros tui`: connect (starting a local daemon if none answers) before the screen
    opens, so a failure is a plain message; then run the console. Returns the exit code."""
    connection = open_connection(loaded, daemon, token)
    app = create_app(connection)
    try:
        app.run()
    finally:
        connection.dispose()
    return app.return_code or 0
