"""The console app, built by :func:`create_app` from a :class:`~kyros.tui.connection.Connection`
(a real daemon's, or an in-memory one for snapshot tests), and :func:`run` for `kyros tui`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from textual.app import App
from textual.binding import Binding

from kyros.settings import Loaded, detach_key_byte
from kyros.tui.commands import KyrosCommands
from kyros.tui.connection import Connection
from kyros.tui.screens.main import MainScreen
from kyros.tui.terminal_keys import LEAVE_BINDING, LEAVE_KEY, key_name


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
        leave_key: str = LEAVE_KEY,
    ) -> None:
        super().__init__()
        self.connection = connection
        #: The key that takes the focus out of a terminal (Textual's name for it).
        self.leave_key = leave_key
        if leave_key != LEAVE_KEY:
            self.set_keymap({LEAVE_BINDING: leave_key})
        self._main = MainScreen(connection, cwd=cwd, clock=clock, poll_seconds=poll_seconds)

    def get_default_screen(self) -> MainScreen:
        return self._main

    @property
    def main(self) -> MainScreen:
        return self._main

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # While a terminal has the focus, ctrl+p is its program's (shell history, vim). Asked
        # of the widget, not by class: importing the terminal view here would load the
        # emulator at start-up, which the terminals screen defers.
        takes_every_key = getattr(self.focused, "takes_every_key", False)
        return not (action == "command_palette" and takes_every_key)

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
    leave_key: str = LEAVE_KEY,
) -> KyrosApp:
    """The console on ``connection``; ``cwd`` is the new-run form's default workspace and
    new terminals' directory, ``clock`` the "now" ages are counted from (fixed in snapshot
    tests), ``leave_key`` the key (Textual's name) that takes the focus out of a terminal."""
    return KyrosApp(
        connection,
        cwd=cwd or Path.cwd(),
        clock=clock or (lambda: datetime.now(UTC)),
        poll_seconds=poll_seconds,
        leave_key=leave_key,
    )


def run_connected(connection: Connection, loaded: Loaded) -> int:
    """Run the console on an open ``connection`` (see :mod:`kyros.tui.launch`, which opens it
    while this module loads); returns the exit code."""
    # The key that detaches `kyros term attach` leaves a terminal pane (checked when loaded).
    leave = key_name(detach_key_byte(loaded.detach_key))
    app = create_app(connection, leave_key=leave)
    try:
        app.run()
    finally:
        connection.dispose()
    return app.return_code or 0
