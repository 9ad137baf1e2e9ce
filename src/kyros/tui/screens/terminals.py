"""The terminals screen: a tab per attached daemon terminal, new / attach / close / kill.

It is installed once per app (:func:`show_terminals`), so its tabs stay attached while the runs
are shown. Daemon calls (create, list, kill) run in thread workers and answer with Messages;
the attach WebSockets are the :class:`~kyros.tui.widgets.terminal_view.TerminalView`'s own.
While a terminal has the focus every key is the program's; ``ctrl+\\`` hands the focus to the
tab bar, where the screen's keys work.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Static, TabbedContent, TabPane, Tabs

from kyros.errors import KyrosError
from kyros.tui.connection import Connection
from kyros.tui.screens.confirm import ConfirmScreen
from kyros.tui.screens.help import HelpScreen
from kyros.tui.screens.terminal_picker import TerminalPicker
from kyros.tui.terminal_keys import LEAVE_KEY
from kyros.tui.widgets.footer import KeyBar
from kyros.tui.widgets.terminal_view import TerminalView, exit_note

#: The name the screen is installed under.
SCREEN_NAME = "terminals"
#: The screen's own keys, idle while a terminal has the focus (its program gets every key).
TAB_ACTIONS = frozenset(
    {"new_terminal", "attach", "close_tab", "kill", "focus_terminal", "back", "help"}
)
EMPTY = "No terminal open.  ctrl+t starts a shell · a attaches to a running terminal · esc: runs"


def pick_run_terminal(terminals: list[dict[str, Any]], run_id: str) -> dict[str, Any] | None:
    """The terminal to show for ``run_id``: its running one, else the newest it had."""
    mine = [t for t in terminals if t.get("run_id") == run_id]
    if not mine:
        return None
    mine.sort(key=lambda t: (t.get("status") == "running", str(t.get("created_at", ""))))
    return mine[-1]


class TerminalsScreen(Screen[None]):
    """Tabs of daemon terminals; the keys are in the footer."""

    BINDINGS = [
        Binding("ctrl+t", "new_terminal", "New"),
        Binding("n", "new_terminal", "New", show=False),
        Binding("a", "attach", "Attach"),
        Binding("enter,i", "focus_terminal", "Type in it"),
        Binding("w", "close_tab", "Close tab"),
        Binding("k", "kill", "Kill"),
        Binding("escape", "back", "Runs"),
        Binding("question_mark", "help", "Help"),
    ]

    @dataclass
    class Opened(Message):
        """A terminal to show in a tab (created, picked, or a run's)."""

        terminal: dict[str, Any]

    @dataclass
    class Listed(Message):
        """The daemon's terminals, read for the attach picker."""

        terminals: list[dict[str, Any]]

    @dataclass
    class Killed(Message):
        terminal_id: str

    @dataclass
    class Failed(Message):
        action: str
        message: str

    def __init__(self, connection: Connection, *, cwd: Path) -> None:
        super().__init__()
        self.connection = connection
        self.cwd = cwd

    def compose(self) -> ComposeResult:
        yield Static("Terminals", id="terms-head")
        yield TabbedContent(id="terminal-tabs")
        yield Static(EMPTY, id="terms-empty")
        yield KeyBar()

    def on_mount(self) -> None:
        self._update_head()

    # --- the tabs ---------------------------------------------------------------------------

    @property
    def tabs(self) -> TabbedContent:
        return self.query_one("#terminal-tabs", TabbedContent)

    @property
    def views(self) -> list[TerminalView]:
        """The open terminals, in tab order."""
        return list(self.query(TerminalView))

    @property
    def active_view(self) -> TerminalView | None:
        pane = self.tabs.active_pane
        return None if pane is None else next(iter(pane.query(TerminalView)), None)

    def view_of(self, terminal_id: str) -> TerminalView | None:
        return next((v for v in self.views if v.terminal_id == terminal_id), None)

    def _update_head(self) -> None:
        count = len(self.views)
        self.query_one("#terms-empty").display = count == 0
        self.tabs.display = count > 0
        leave = self.app.get_key_display(Binding(self.leave_key, ""))
        hint = f"{leave} leaves a terminal · enter returns to it" if count else ""
        head = f"Terminals · {count} open" + (f"  ({hint})" if hint else "")
        self.query_one("#terms-head", Static).update(head)

    @property
    def leave_key(self) -> str:
        """The key that takes the focus out of a terminal (the app's ``detach_key``)."""
        return str(getattr(self.app, "leave_key", LEAVE_KEY))

    def _tab_label(self, view: TerminalView) -> str:
        if view.exited is None:
            return view.label
        return f"{view.label} {exit_note(view.exited['code'], view.exited['signal'])}"

    async def open_terminal(self, terminal: dict[str, Any]) -> TerminalView | None:
        """Show ``terminal`` in a tab (its tab, if one is open) and give it the focus."""
        view = self.view_of(terminal["id"])
        if view is None:
            try:
                target = self.connection.attach_target()
            except KyrosError as exc:
                self.notify(exc.message, title="terminal", severity="error")
                return None
            label = str(terminal.get("name") or terminal["id"])
            view = TerminalView(target, terminal["id"], label=label, leave_key=self.leave_key)
            await self.tabs.add_pane(TabPane(label, view, id=f"tab-{terminal['id']}"))
            self._update_head()
        pane = view.parent
        if isinstance(pane, TabPane) and pane.id:
            self.tabs.active = pane.id
        view.focus()
        return view

    async def close_view(self, view: TerminalView) -> None:
        """Detach ``view`` and remove its tab (the session runs on in the daemon)."""
        await view.detach()
        pane = view.parent
        if isinstance(pane, TabPane) and pane.id:
            await self.tabs.remove_pane(pane.id)
        self._update_head()
        following = self.active_view
        if following is not None:
            following.focus()
        else:
            self.query_one("#terms-empty").focus()

    # --- actions ----------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in TAB_ACTIONS and isinstance(self.focused, TerminalView):
            return False  # its program has the keys: the footer shows only the way out
        if action in ("close_tab", "kill", "focus_terminal") and self.active_view is None:
            return None
        return True

    def action_new_terminal(self) -> None:
        self.new_terminal()

    def action_attach(self) -> None:
        self._list()

    def action_focus_terminal(self) -> None:
        view = self.active_view
        if view is not None:
            view.focus()

    async def action_close_tab(self) -> None:
        view = self.active_view
        if view is not None:
            await self.close_view(view)

    def action_kill(self) -> None:
        view = self.active_view
        if view is None:
            return
        if view.exited is not None:
            self.notify(f"{view.label} has already exited; w closes its tab", timeout=4)
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._kill(view.terminal_id)

        question = f"Kill terminal {view.label}? Its program ends; its output is kept."
        self.app.push_screen(ConfirmScreen(question, yes="Kill"), answered)

    def action_back(self) -> None:
        if len(self.app.screen_stack) > 1 and self.app.screen is self:
            self.app.pop_screen()

    def action_help(self) -> None:
        self.app.push_screen(HelpScreen())

    def on_terminal_view_leave_requested(self, message: TerminalView.LeaveRequested) -> None:
        self.query_one(Tabs).focus()

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        self.refresh_bindings()

    # --- daemon calls (thread workers) ------------------------------------------------------

    @work(thread=True, group="terminals", name="new terminal", exit_on_error=False)
    def new_terminal(self, command: list[str] | None = None, name: str | None = None) -> None:
        """Start a terminal (the user's shell unless ``command``) and open it in a tab."""
        size = self.size
        body: dict[str, Any] = {
            "rows": max(2, size.height - 4),  # the pane's size; the attach sets the exact one
            "cols": max(2, size.width),
        }
        if self.connection.local:  # a remote daemon does not have our directories
            body["cwd"] = str(self.cwd)
        if command is not None:
            body["command"] = command
        if name is not None:
            body["name"] = name
        try:
            terminal = self.connection.create_terminal(body)
        except KyrosError as exc:
            self.post_message(self.Failed("start a terminal", exc.message))
            return
        self.post_message(self.Opened(terminal))

    @work(thread=True, group="terminals", name="list terminals", exit_on_error=False)
    def _list(self) -> None:
        try:
            terminals = self.connection.terminals()
        except KyrosError as exc:
            self.post_message(self.Failed("list terminals", exc.message))
            return
        self.post_message(self.Listed(terminals))

    @work(thread=True, group="terminals", name="run terminal", exit_on_error=False)
    def open_run_terminal(self, run_id: str) -> None:
        """Open the terminal of run ``run_id`` (its running one, else its newest)."""
        try:
            terminals = self.connection.terminals()
        except KyrosError as exc:
            self.post_message(self.Failed("list terminals", exc.message))
            return
        terminal = pick_run_terminal(terminals, run_id)
        if terminal is None:
            message = (
                f"run {run_id} has no terminal: an implement run's commands run in one, "
                "while the daemon keeps it"
            )
            self.post_message(self.Failed("open the run's terminal", message))
            return
        self.post_message(self.Opened(terminal))

    @work(thread=True, group="terminals", name="kill terminal", exit_on_error=False)
    def _kill(self, terminal_id: str) -> None:
        try:
            self.connection.kill_terminal(terminal_id)
        except KyrosError as exc:
            self.post_message(self.Failed("kill the terminal", exc.message))
            return
        self.post_message(self.Killed(terminal_id))

    async def on_terminals_screen_opened(self, message: Opened) -> None:
        await self.open_terminal(message.terminal)

    def on_terminals_screen_listed(self, message: Listed) -> None:
        if not message.terminals:
            self.notify("the daemon has no terminal; ctrl+t starts one", timeout=4)
            return

        async def chosen(terminal: dict[str, Any] | None) -> None:
            if terminal is not None:
                await self.open_terminal(terminal)

        self.app.push_screen(TerminalPicker(message.terminals), chosen)

    async def on_terminals_screen_killed(self, message: Killed) -> None:
        view = self.view_of(message.terminal_id)
        self.notify(f"killed terminal {view.label if view else message.terminal_id}", timeout=3)
        if view is not None:
            await self.close_view(view)

    def on_terminals_screen_failed(self, message: Failed) -> None:
        self.notify(message.message, title=f"could not {message.action}", severity="error")

    # --- what the terminals say -------------------------------------------------------------

    def _relabel(self, view: TerminalView) -> None:
        pane = view.parent
        if isinstance(pane, TabPane) and pane.id:
            self.tabs.get_tab(pane.id).label = self._tab_label(view)

    def on_terminal_view_exited(self, message: TerminalView.Exited) -> None:
        self._relabel(message.view)

    def on_terminal_view_failed(self, message: TerminalView.Failed) -> None:
        title = f"terminal {message.view.label}"
        self.notify(message.message, title=title, severity="error", timeout=8)


def show_terminals(app: App[Any], connection: Connection, cwd: Path) -> TerminalsScreen:
    """The app's terminals screen, brought to the top (installed on first use: its tabs stay
    attached while other screens are shown)."""
    if not app.is_screen_installed(SCREEN_NAME):
        app.install_screen(TerminalsScreen(connection, cwd=cwd), SCREEN_NAME)
    screen = app.get_screen(SCREEN_NAME, TerminalsScreen)  # raises if another class
    if screen not in app.screen_stack:
        app.push_screen(screen)
    return screen
