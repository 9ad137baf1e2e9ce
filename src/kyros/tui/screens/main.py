"""The main screen: connection bar, runs, agents, approvals and the run detail.

It owns the daemon I/O that is not one run's: a thread worker polls the daemon every second
(runs, approvals, agents) and posts what it saw; actions (new run, approve, deny, cancel,
apply, switch daemon) run in thread workers too and answer with a Message and a toast. A
failure never raises into the UI: the link state shows in the bar, refusals in toasts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.events import DescendantFocus
from textual.message import Message
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import DataTable, Input
from textual.worker import Worker, WorkerState, get_current_worker

from kyros.errors import DaemonUnreachable, KyrosError
from kyros.tui.connection import Connection, LinkState, Snapshot
from kyros.tui.screens.new_run import NewRun, NewRunScreen
from kyros.tui.screens.prompt import PromptScreen
from kyros.tui.widgets.agents_list import AgentsList
from kyros.tui.widgets.approvals import Approvals
from kyros.tui.widgets.connection_bar import ConnectionBar
from kyros.tui.widgets.footer import KeyBar
from kyros.tui.widgets.run_detail import RunDetail
from kyros.tui.widgets.runs_table import RunsTable

if TYPE_CHECKING:
    from kyros.tui.screens.terminals import TerminalsScreen

#: Wait after a failed poll: a daemon restart takes ~2 s; 0.5 s notices it soon after.
RETRY_SECONDS = 0.5
#: A highlighted row is shown after the cursor rests this long (arrow keys held down would
#: otherwise start a reader per row passed).
SELECT_DELAY = 0.12
SORT_NAMES = {"age": "newest first", "id": "newest first"}
#: Every how many polls one reads the full window of runs (the others read the newest 100
#: plus every running and waiting run).
FULL_POLL_EVERY = 15
#: Filter keystrokes settle this long before the table is filtered again.
FILTER_DELAY = 0.15


class MainScreen(Screen[None]):
    """Runs (filter, sort), agents, approvals, run detail; the keys are in the footer."""

    #: The runs table has the keys first (focused as the screen opens, not after: a second
    #: focus change would rebuild the footer again).
    AUTO_FOCUS = "#runs"
    #: Below 120 columns the agents and approvals give their 46 to the runs and the run: the
    #: runs table needs ~75 for id, status, kind, age and goal (app.tcss, ``-narrow``).
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]
    BINDINGS = [
        Binding("n", "new_run", "New run"),
        Binding("slash", "focus_filter", "Filter"),
        Binding("s", "cycle_sort", "Sort"),
        Binding("a", "approve", "Approve"),
        Binding("d", "deny", "Deny"),
        Binding("x", "cancel_run", "Cancel"),
        Binding("p", "apply", "Apply"),
        Binding("c", "continue_run", "Continue"),
        Binding("k", "critic", "Critic"),
        Binding("t", "terminals", "Terminals"),
        Binding("o", "run_terminal", "Run's terminal"),
        Binding("u", "usage", "Usage"),
        Binding("ctrl+t", "new_terminal", "New terminal", show=False),  # in help, palette
        Binding("question_mark", "help", "Help"),
        Binding("escape", "leave_filter", "Leave filter", show=False),
        Binding("r", "refresh", "Refresh", show=False),
    ]

    @dataclass
    class Polled(Message):
        snapshot: Snapshot

    @dataclass
    class PollFailed(Message):
        message: str

    @dataclass
    class LinkChanged(Message):
        state: LinkState
        detail: str | None

    @dataclass
    class ActionDone(Message):
        action: str
        run_id: str
        result: dict[str, Any]

    @dataclass
    class ActionFailed(Message):
        action: str
        run_id: str
        message: str

    @dataclass
    class RunCreated(Message):
        run: dict[str, Any]

    @dataclass
    class Switched(Message):
        label: str

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
        self.cwd = cwd
        self.clock = clock
        self.poll_seconds = poll_seconds
        #: Polls applied so far (the first one fills the panes).
        self.polls = 0
        self._last_error: str | None = None
        self._select_timer: Timer | None = None
        self._filter_timer: Timer | None = None

    def compose(self) -> ComposeResult:
        yield ConnectionBar(self.connection.label, id="bar")
        with Horizontal(id="body"):
            with Vertical(id="side"):
                yield AgentsList(id="agents")
                yield Approvals(id="approvals")
            with Vertical(id="work"):
                with Vertical(id="runs-pane"):
                    yield Input(
                        placeholder="/ filter: words in id, status, kind, goal, agent",
                        id="filter",
                        compact=True,
                    )
                    yield RunsTable(clock=self.clock, id="runs")
                yield RunDetail(self.connection, id="detail")
        yield KeyBar()

    def on_mount(self) -> None:
        self._fit_width(self.app.size.width)
        self.query_one("#agents").border_title = "Agents"
        self.query_one("#approvals").border_title = "Approvals"
        self.query_one("#detail").border_title = "Run"
        self._title_runs()
        self.connection.listener = self._link_changed
        first = self.connection.first_snapshot()
        if first is not None:  # read while the console loaded: the first frame shows the runs
            self.on_main_screen_polled(self.Polled(first))
        self._poll(read_now=first is None)

    # --- panes --------------------------------------------------------------------------

    def _fit_width(self, width: int) -> None:
        """The layout for ``width`` from the first frame: Textual sets the breakpoint class and
        the table learns its width only on the first resize, ~150 ms later, which showed the
        wide layout squeezed until then."""
        names = [name for at, name in self.HORIZONTAL_BREAKPOINTS if width >= at] or ["-narrow"]
        self.update_classes({name: name == names[-1] for _, name in self.HORIZONTAL_BREAKPOINTS})
        side_width = self.query_one("#side").styles.width  # 46, from app.tcss
        beside = 0 if names[-1] == "-narrow" or side_width is None else int(side_width.value)
        # Its borders (2) and a vertical scrollbar (2): off by those, the resize corrects it.
        self.runs_table.fit(width - beside - 4)

    @property
    def runs_table(self) -> RunsTable:
        return self.query_one(RunsTable)

    @property
    def detail(self) -> RunDetail:
        return self.query_one(RunDetail)

    @property
    def approvals(self) -> Approvals:
        return self.query_one(Approvals)

    def _title_runs(self) -> None:
        table = self.runs_table
        total = len(table.runs)
        shown = f"{table.shown} of {total}" if table.filter_text else f"{total}"
        arrow = "↓" if table.sort_reverse else "↑"
        order = SORT_NAMES.get(table.sort_column) if table.sort_reverse else None
        order = order or f"by {table.sort_column} {arrow}"
        self.query_one("#runs-pane").border_title = f"Runs · {shown} · {order}"

    # --- the poll -----------------------------------------------------------------------

    def _link_changed(self, state: LinkState, detail: str | None) -> None:
        """The connection's listener: called from whichever thread saw the change."""
        self.post_message(self.LinkChanged(state, detail))

    @work(thread=True, exclusive=True, group="poll", name="poll daemon", exit_on_error=False)
    def _poll(self, read_now: bool = True) -> None:
        worker = get_current_worker()
        conn = self.connection
        tick, source = 0, conn.label
        if not read_now:  # a full snapshot was just applied
            tick = 1
            if conn.nap(self.poll_seconds):
                return
        while not (worker.is_cancelled or conn.stopping):
            if conn.label != source:  # switched daemons: read everything
                tick, source = 0, conn.label
            try:
                snapshot = conn.snapshot(full=tick % FULL_POLL_EVERY == 0)
                tick += 1
            except DaemonUnreachable:
                tick = 0  # read everything again once the daemon is back
                delay = RETRY_SECONDS  # the bar says "reconnecting" (LinkChanged)
            except KyrosError as exc:
                self.post_message(self.PollFailed(exc.message))
                delay = self.poll_seconds * 5
            else:
                self.post_message(self.Polled(snapshot))
                delay = self.poll_seconds
            if conn.nap(delay):
                return

    def on_main_screen_polled(self, message: Polled) -> None:
        snapshot = message.snapshot
        if snapshot.source != self.connection.label:
            return  # read from the daemon the console just left
        self._last_error = None
        table = self.runs_table
        table.update_runs([*snapshot.runs, *snapshot.approvals])
        self.query_one(AgentsList).update_agents(snapshot.agents)
        if snapshot.approvals != list(self.approvals.waiting.values()):
            # On a change only: the pane repaints whole each time it is told (~5 ms a poll).
            self.approvals.update_waiting(snapshot.approvals)
        detail = self.detail
        if detail.run_id is None and table.selected_run_id is not None:
            detail.show_run(table.selected_run_id)  # the first poll: show the newest run
        elif detail.run_id is not None and detail.run_id in table.runs:
            detail.update_run(table.runs[detail.run_id])
        self._title_runs()
        self.polls += 1

    def on_main_screen_poll_failed(self, message: PollFailed) -> None:
        if message.message != self._last_error:  # one toast per new problem, not per poll
            self._last_error = message.message
            self.notify(message.message, title="daemon", severity="error", timeout=8)

    def on_main_screen_link_changed(self, message: LinkChanged) -> None:
        bar = self.query_one(ConnectionBar)
        was = bar.state
        bar.label = self.connection.label
        bar.detail = message.detail
        bar.state = message.state.value
        if message.state is LinkState.RECONNECTING and was == "connected":
            self.notify("lost the daemon; reconnecting…", severity="warning", timeout=4)
        elif message.state is LinkState.CONNECTED and was == "reconnecting":
            self.notify("reconnected to the daemon", timeout=3)
            self.connection.poke()
        elif message.state is LinkState.FAILING and message.detail != self._last_error:
            self._last_error = message.detail
            self.notify(message.detail or "refused", title="daemon", severity="error")

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A worker that failed unexpectedly: say so in a toast, keep the poll alive."""
        if event.state is not WorkerState.ERROR:
            return
        error = event.worker.error
        self.notify(
            f"{event.worker.name}: {type(error).__name__}: {error}",
            title="internal error",
            severity="error",
            timeout=10,
        )
        if event.worker.name == "poll daemon" and not self.connection.stopping:
            self._poll()

    # --- selection ----------------------------------------------------------------------

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        table = event.data_table
        if event.row_key.value is None or isinstance(table, AgentsList):
            return
        if isinstance(table, Approvals) and not table.has_focus:
            return
        if self._select_timer is not None:
            self._select_timer.stop()
        self._select_timer = self.set_timer(SELECT_DELAY, lambda: self._show_selected(table))

    def _show_selected(self, table: DataTable[Any]) -> None:
        """Show the run under ``table``'s cursor now (rows may have moved since the event)."""
        run_id = table.selected_run_id if isinstance(table, RunsTable | Approvals) else None
        if run_id is not None:
            self.detail.show_run(run_id)

    def on_descendant_focus(self, event: DescendantFocus) -> None:
        """Focusing the approvals pane shows its selected run (what ``a``/``d`` answer)."""
        approvals = self.approvals
        if event.widget is approvals and approvals.selected_run_id is not None:
            self.detail.show_run(approvals.selected_run_id)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value is None:
            return
        if isinstance(event.data_table, AgentsList):
            run_id = self.query_one(AgentsList).current_run(str(event.row_key.value))
            if run_id is None:
                return
        else:
            run_id = str(event.row_key.value)
        if self._select_timer is not None:
            self._select_timer.stop()
        self.detail.show_run(run_id)

    def on_runs_table_sort_changed(self, message: RunsTable.SortChanged) -> None:
        self._title_runs()

    # --- filter and sort ----------------------------------------------------------------

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id != "filter":
            return
        if self._filter_timer is not None:
            self._filter_timer.stop()
        self._filter_timer = self.set_timer(FILTER_DELAY, lambda: self._filter(event.value))

    def _filter(self, text: str) -> None:
        self.runs_table.set_filter(text)
        self._title_runs()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter":
            self.runs_table.focus()

    def action_focus_filter(self) -> None:
        self.query_one("#filter", Input).focus()

    def action_leave_filter(self) -> None:
        if self.query_one("#filter", Input).has_focus:
            self.runs_table.focus()

    def action_cycle_sort(self) -> None:
        self.runs_table.cycle_sort()

    def action_refresh(self) -> None:
        self.connection.poke()

    def action_help(self) -> None:
        # Imported here: its Markdown costs ~50 ms of the console's start-up.
        from kyros.tui.screens.help import HelpScreen

        self.app.push_screen(HelpScreen())

    # --- new runs -----------------------------------------------------------------------

    def action_new_run(self, kind: str = "plan") -> None:
        detail_run = self.detail.run or {}
        target = detail_run.get("id") if kind in ("critic", "implement") else None
        if kind == "implement" and detail_run.get("kind") != "plan":
            target = None
        self._new_run_form(kind, target_run=target)

    def _new_run_form(
        self, kind: str, *, target_run: str | None = None, continue_run: str | None = None
    ) -> None:
        screen = NewRunScreen(
            kind,
            cwd=self.cwd,
            agents=self.query_one(AgentsList).names,
            target_run=target_run,
            continue_run=continue_run,
        )
        self.app.push_screen(screen, self._new_run_answered)

    def _new_run_answered(self, answer: NewRun | None) -> None:
        if answer is not None:
            self._create(answer)

    @work(thread=True, group="actions", name="create run", exit_on_error=False)
    def _create(self, answer: NewRun) -> None:
        try:
            run = self.connection.create_run(answer.kind, answer.body)
        except KyrosError as exc:
            self.post_message(self.ActionFailed("start", answer.kind, exc.message))
            return
        self.connection.poke()
        self.post_message(self.RunCreated(run))

    def on_main_screen_run_created(self, message: RunCreated) -> None:
        run = message.run
        self.notify(f"{run['kind']} run {run['id']} queued", timeout=3)
        self.runs_table.update_runs([run])
        self.runs_table.select_run(run["id"])
        self.detail.show_run(run["id"])
        self._title_runs()

    # --- actions on a run ---------------------------------------------------------------

    def target_run(self) -> str | None:
        """The run an action applies to: the approvals pane's when it has focus, else the
        detail pane's, else the runs table's."""
        if self.approvals.has_focus and self.approvals.selected_run_id:
            return self.approvals.selected_run_id
        return self.detail.run_id or self.runs_table.selected_run_id

    def _status(self, run_id: str) -> str | None:
        if run_id in self.approvals.waiting:
            return "needs_approval"
        run = self._run(run_id)
        return None if run is None else str(run["status"])

    def _run(self, run_id: str) -> dict[str, Any] | None:
        """The freshest copy of ``run_id`` the panes hold: the detail's, else the table's,
        else the approvals pane's."""
        detail = self.detail
        if detail.run_id == run_id and detail.run is not None:
            return detail.run
        return self.runs_table.runs.get(run_id) or self.approvals.waiting.get(run_id)

    def request(self, action: str, run_id: str | None = None) -> None:
        """Approve, deny, cancel, apply, continue or review ``run_id`` (the target run by
        default); the last two open the new-run form."""
        run_id = run_id or self.target_run()
        if run_id is None:
            self.notify("select a run first", severity="warning", timeout=3)
            return
        if action == "continue":
            run = self._run(run_id) or {}
            kind = run.get("kind") if run.get("kind") in ("plan", "implement", "pipeline") else None
            self._new_run_form(kind or "plan", continue_run=run_id)
            return
        if action == "critic":
            self._new_run_form("critic", target_run=run_id)
            return
        if action in ("approve", "deny") and self._status(run_id) != "needs_approval":
            self.notify(f"run {run_id} is not waiting for approval", severity="warning")
            return
        if action == "deny":
            question = f"Deny what run {run_id} waits on. Reason (told to the model; optional):"

            def answered(reason: str | None) -> None:
                if reason is not None:
                    self._act("deny", run_id, reason)

            self.app.push_screen(PromptScreen(question, placeholder="why not"), answered)
            return
        self._act(action, run_id, None)

    def action_approve(self) -> None:
        self.request("approve")

    def action_deny(self) -> None:
        self.request("deny")

    def action_cancel_run(self) -> None:
        self.request("cancel")

    def action_apply(self) -> None:
        self.request("apply")

    def action_continue_run(self) -> None:
        self.request("continue")

    def action_critic(self) -> None:
        self.request("critic")

    def on_run_detail_action_requested(self, message: RunDetail.ActionRequested) -> None:
        self.request(message.action, message.run_id)

    @work(thread=True, group="actions", name="run action", exit_on_error=False)
    def _act(self, action: str, run_id: str, reason: str | None) -> None:
        conn = self.connection
        try:
            if action in ("approve", "deny"):
                result = conn.answer(run_id, approve=action == "approve", reason=reason or None)
            elif action == "cancel":
                result = conn.cancel(run_id)
            else:
                result = conn.apply(run_id)
        except KyrosError as exc:
            self.post_message(self.ActionFailed(action, run_id, exc.message))
            return
        conn.poke()
        self.post_message(self.ActionDone(action, run_id, result))

    def on_main_screen_action_done(self, message: ActionDone) -> None:
        result = message.result
        if message.action == "apply":
            text = f"applied run {message.run_id} to {result.get('workspace')}: "
            text += str(result.get("summary"))
        else:
            verb = {"approve": "approved", "deny": "denied", "cancel": "cancel requested"}
            text = f"{message.run_id}: {verb[message.action]} ({result.get('status')})"
        self.notify(text, timeout=4)
        if "status" in result and "id" in result:
            self.runs_table.update_runs([result])
            self.detail.update_run(result)
            if result["status"] != "needs_approval":
                waiting = self.approvals.waiting
                self.approvals.update_waiting(
                    [r for r in waiting.values() if r["id"] != message.run_id]
                )

    def on_main_screen_action_failed(self, message: ActionFailed) -> None:
        self.notify(
            message.message,
            title=f"could not {message.action} {message.run_id}",
            severity="error",
            timeout=8,
        )

    # --- terminals ----------------------------------------------------------------------

    def _terminals(self) -> TerminalsScreen:
        # Deferred: the terminals screen brings the emulator (pyte) and the WebSocket client,
        # ~40 ms of start-up for a screen a session may never open.
        from kyros.tui.screens.terminals import show_terminals

        return show_terminals(self.app, self.connection, self.cwd)

    def action_terminals(self) -> None:
        """Show the terminals screen (its tabs as they were)."""
        self._terminals()

    def action_new_terminal(self) -> None:
        """Start a shell in the console's directory and show it."""
        self._terminals().new_terminal()

    def action_attach_terminal(self) -> None:
        """Pick one of the daemon's terminals and show it."""
        self._terminals().action_attach()

    def action_run_terminal(self) -> None:
        """Show the terminal the selected run's commands run in."""
        run_id = self.target_run()
        if run_id is None:
            self.notify("select a run first", severity="warning", timeout=3)
            return
        self._terminals().open_run_terminal(run_id)

    # --- usage ------------------------------------------------------------------------------

    def action_usage(self) -> None:
        """Show what the model calls cost (``esc`` comes back)."""
        from kyros.tui.screens.usage import UsageScreen

        self.app.push_screen(UsageScreen(self.connection))

    # --- switching daemons --------------------------------------------------------------

    def action_switch_daemon(self) -> None:
        if not self.connection.can_switch:
            self.notify("this console cannot switch daemons", severity="warning")
            return
        self.app.push_screen(
            PromptScreen(
                "Switch to the daemon at:",
                placeholder="unix:///path/kyros.sock or https://host:port",
                value=self.connection.label,
            ),
            self._switch_answered,
        )

    def _switch_answered(self, address: str | None) -> None:
        if address:
            self._switch(address)

    @work(thread=True, exclusive=True, group="switch", name="switch daemon", exit_on_error=False)
    def _switch(self, address: str) -> None:
        try:
            label = self.connection.switch(address)
        except KyrosError as exc:
            self.post_message(self.ActionFailed("switch to", address, exc.message))
            return
        self.post_message(self.Switched(label))

    def on_main_screen_switched(self, message: Switched) -> None:
        self.runs_table.clear_runs()
        self.query_one(AgentsList).clear_agents()
        self.approvals.clear_waiting()
        self.detail.clear_run()
        self.query_one(ConnectionBar).label = message.label
        self._title_runs()
        self.notify(f"now talking to {message.label}", timeout=3)
        self.connection.poke()
