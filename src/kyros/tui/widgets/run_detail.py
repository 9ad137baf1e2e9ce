"""The run detail pane: one run's state and cost, what it waits on, its actions, and tabs for
its events (live), its result (Markdown), its diff (highlighted) and its review. The actions
shown are the ones the run's status allows: approve/deny, cancel, apply, continue (a new run on
the same conversation) and run the critic (a review of its change).

A thread worker reads the run, then its events after the last sequence number seen, a few
times a second while the run moves (see :mod:`kyros.tui.connection` for why polls): when the
daemon restarts, the next read resumes after the same number, so nothing is lost or repeated.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from rich.syntax import Syntax
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Button, Static, TabbedContent, TabPane
from textual.worker import Worker, WorkerState, get_current_worker

from kyros.errors import DaemonUnreachable, KyrosError
from kyros.sanitize import clean_text, one_line
from kyros.statuses import FINAL_EVENT_TYPES, TERMINAL_STATUSES
from kyros.tui.cells import money, status_text
from kyros.tui.connection import Connection
from kyros.tui.run_output import attempts_markdown, diff_of, output_markdown, review_markdown
from kyros.tui.widgets.run_events import RunEvents

#: Seconds between event reads while a run moves, and while it waits or sits queued.
LIVE_POLL = 0.25
IDLE_POLL = 1.0
#: The actions a run's status allows.
ACTIONS = {
    "approve": {"needs_approval"},
    "deny": {"needs_approval"},
    "cancel": {"queued", "running", "needs_approval"},
    "apply": {"succeeded"},
    # A new run on the same conversation, and a critic's review of the change.
    "continue": set(TERMINAL_STATUSES),
    "critic": {"succeeded"},
}
#: Kinds whose result is a change (apply it, review it).
CHANGE_KINDS = ("implement", "pipeline")


class RunDetail(Vertical):
    """Everything about the selected run; nothing shown until one is selected."""

    @dataclass
    class Loaded(Message):
        """The run (and its review) as read from the daemon."""

        run_id: str
        run: dict[str, Any]
        review: dict[str, Any] | None

    @dataclass
    class EventsArrived(Message):
        run_id: str
        events: list[dict[str, Any]]

    @dataclass
    class Failed(Message):
        run_id: str
        message: str

    @dataclass
    class ActionRequested(Message):
        """A button asked for ``action`` on ``run_id`` (the screen performs it)."""

        action: str
        run_id: str

    def __init__(self, connection: Connection, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.connection = connection
        self.run_id: str | None = None
        self.run: dict[str, Any] | None = None
        self.review: dict[str, Any] | None = None
        self._shown: tuple[Any, ...] = ()
        #: The actions and tabs are mounted (see :meth:`_build`).
        self._built = False
        #: Events that arrived before that, added once they are.
        self._early: list[dict[str, Any]] = []

    def compose(self) -> ComposeResult:
        yield Static("Select a run (↑↓ in the runs table) to see it here.", id="detail-head")
        yield Static("", id="pending")

    def on_mount(self) -> None:
        # The actions and tabs (~25 widgets, ~60 ms to style and lay out) come a frame after
        # the console's first: that frame shows the runs, and the run's head, sooner.
        self.call_after_refresh(self._build)

    async def _build(self) -> None:
        buttons = [
            Button("Approve", id="approve", variant="success", compact=True),
            Button("Deny", id="deny", variant="error", compact=True),
            Button("Cancel run", id="cancel", variant="warning", compact=True),
            Button("Apply", id="apply", variant="primary", compact=True),
            Button("Continue", id="continue", compact=True),
            Button("Run critic", id="critic", compact=True),
        ]
        for button in buttons:
            button.display = False  # until a run's status allows it
        # No ``initial``: the first pane (Events) is active anyway, and Textual's tabs then look
        # it up on mount without a check that fails when the console quits at that moment
        # (ValueError "No Tab with id '--content-tab-tab-events'", exit 1).
        tabs = TabbedContent(id="detail-tabs")
        for pane in (
            TabPane("Events", RunEvents(id="events"), id="tab-events"),
            TabPane("Result", VerticalScroll(id="output-scroll"), id="tab-output"),
            TabPane("Diff", VerticalScroll(Static("", id="diff")), id="tab-diff"),
            TabPane("Review", VerticalScroll(id="review-scroll"), id="tab-review"),
        ):
            tabs.compose_add_child(pane)  # what `with TabbedContent():` does in a compose
        await self.mount_all([Horizontal(*buttons, id="actions"), tabs])
        if not (self.app.is_running and tabs.is_mounted):
            # The console is quitting: this ran from the screen's queue while the detail was
            # being taken down, which mounts nothing.
            return
        self._built = True
        if self._early:
            self.query_one(RunEvents).add(self._early)
            self._early = []
        if self.run is not None:
            self._shown = ()
            self._render_run(self.run, self.review, opened=True)

    # --- selection --------------------------------------------------------------------------

    def show_run(self, run_id: str) -> None:
        """Show ``run_id`` (again: a no-op) and follow its events."""
        if run_id == self.run_id:
            return
        self.run_id, self.run, self.review, self._shown = run_id, None, None, ()
        self._early = []
        if self._built:
            self.query_one(RunEvents).reset()
            self.query_one(TabbedContent).active = "tab-events"
            self._show_actions(None)
        self.query_one("#detail-head", Static).update(f"{run_id} · loading…")
        self.query_one("#pending", Static).display = False
        self._follow(run_id)

    def clear_run(self) -> None:
        self.workers.cancel_group(self, "run-detail")
        self.run_id, self.run, self.review, self._shown = None, None, None, ()
        self._early = []
        if self._built:
            self.query_one(RunEvents).reset()
            self._show_actions(None)
        self.query_one("#detail-head", Static).update("Select a run to see it here.")
        self.query_one("#pending", Static).display = False

    def update_run(self, run: dict[str, Any]) -> None:
        """A poll's fresher copy of the shown run: status, cost, pending action."""
        if run["id"] == self.run_id and self.run is not None:
            self._render_run(run, self.review)

    # --- the worker -------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="run-detail", name="follow run", exit_on_error=False)
    def _follow(self, run_id: str) -> None:
        worker = get_current_worker()
        conn = self.connection
        after = 0
        ended: bool | None = None  # the run's state when first read: None before that
        while not (worker.is_cancelled or conn.stopping):
            try:
                if ended is None:
                    run, review = conn.run(run_id), conn.review(run_id)
                    self.post_message(self.Loaded(run_id, run, review))
                    ended = run["status"] in TERMINAL_STATUSES
                events = conn.events_after(run_id, after)
            except DaemonUnreachable:
                if conn.pause(IDLE_POLL):  # the poll shows the link's state; wait for it
                    return
                continue
            except KyrosError as exc:
                self.post_message(self.Failed(run_id, exc.message))
                return
            if worker.is_cancelled:
                return
            if events:
                after = int(events[-1]["seq"])
                self.post_message(self.EventsArrived(run_id, events))
            if (events and events[-1]["type"] in FINAL_EVENT_TYPES) or (not events and ended):
                if not ended:
                    self._reload(run_id)  # it ended while shown: read its result
                return
            status = self.run["status"] if self.run is not None else "queued"
            if conn.pause(LIVE_POLL if status == "running" else IDLE_POLL):
                return

    def _reload(self, run_id: str) -> None:
        """Read the finished run once more: its output and review are complete now."""
        try:
            run, review = self.connection.run(run_id), self.connection.review(run_id)
        except KyrosError:
            return  # the poll brings the run; the review waits for the next selection
        self.post_message(self.Loaded(run_id, run, review))

    # --- handlers ---------------------------------------------------------------------------

    def on_run_detail_loaded(self, message: Loaded) -> None:
        message.stop()
        if message.run_id != self.run_id:
            return
        self._render_run(message.run, message.review)

    def on_run_detail_events_arrived(self, message: EventsArrived) -> None:
        message.stop()
        if message.run_id != self.run_id:
            return
        if self._built:
            self.query_one(RunEvents).add(message.events)
        else:
            self._early.extend(message.events)

    def on_run_detail_failed(self, message: Failed) -> None:
        message.stop()
        if message.run_id == self.run_id:
            self.query_one("#detail-head", Static).update(
                Text(clean_text(f"{message.run_id}: {message.message}"), style="bold red")
            )

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The reader failed unexpectedly (a bug): a toast, not a traceback."""
        if event.state is WorkerState.ERROR:
            error = event.worker.error
            self.notify(
                f"{event.worker.name}: {type(error).__name__}: {error}",
                title="internal error",
                severity="error",
                timeout=10,
            )

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if self.run_id is not None and event.button.id in ACTIONS:
            self.post_message(self.ActionRequested(event.button.id, self.run_id))

    # --- rendering --------------------------------------------------------------------------

    def _render_run(
        self, run: dict[str, Any], review: dict[str, Any] | None, *, opened: bool = False
    ) -> None:
        """Show ``run``; ``opened``: the tabs were just built (the run is seen anew)."""
        before = None if opened or self.run is None else self.run["status"]
        self.run, self.review = run, review
        if not self._built:  # the head now, the rest once built
            self._render_head(run)
            return
        if run["status"] in TERMINAL_STATUSES and run["status"] != before:
            # The run has ended (or was over when selected): its result is what to see.
            self.query_one(TabbedContent).active = "tab-output"
        key = (run["status"], run.get("cost"), run.get("updated_at"), json.dumps(review))
        if key == self._shown:
            return
        self._shown = key
        self._render_head(run)
        self._show_actions(run)
        attempts = attempts_markdown(review)
        self._show_markdown(
            "output", clean_text(output_markdown(run)) + (f"\n\n{attempts}" if attempts else "")
        )
        diff = diff_of(run, review)
        diff = clean_text(diff) if diff else diff
        self.query_one("#diff", Static).update(
            Syntax(diff, "diff", theme="ansi_dark", background_color="default")
            if diff
            else Text("No diff." if diff is None else "The change is empty.", style="dim")
        )
        self._show_markdown("review", clean_text(review_markdown(review)))

    def _render_head(self, run: dict[str, Any]) -> None:
        head = Text.assemble(
            (run["id"], "bold"), "  ", run["kind"], "  ", status_text(run["status"]), "\n"
        )
        # A pipeline's cost and tokens include its stages' (the daemon adds each stage's call
        # to its parent too); the calls come from the ledger, in the review's ``usage``.
        usage = (self.review or {}).get("usage") or {}
        stages = " with its stages'" if (self.review or {}).get("children") else ""
        calls = f" · {usage['calls']} model calls" if "calls" in usage else ""
        head.append(
            one_line(
                f"agent {run.get('agent') or '-'} · model {run.get('model') or '-'} · "
                f"cost so far{stages} {money(run.get('cost'))} · "
                f"{run.get('tokens_in', 0)}→{run.get('tokens_out', 0)} tokens{calls}"
            )
            + "\n",
            style="dim",
        )
        head.append(one_line(run.get("goal"), 400))
        self.query_one("#detail-head", Static).update(head)
        self._render_pending(run)

    def _show_markdown(self, pane: str, text: str) -> None:
        """Show ``text`` as Markdown in the ``pane`` tab (its widget's id).

        The widget is made the first time a run has something to show: Textual's Markdown
        brings its parser (markdown-it), ~40 ms of the console's start-up otherwise.
        """
        from textual.widgets import Markdown

        found = self.query(f"#{pane}").results(Markdown)
        widget = next(found, None)
        if widget is None:
            self.query_one(f"#{pane}-scroll", VerticalScroll).mount(Markdown(text, id=pane))
        else:
            widget.update(text)

    def _render_pending(self, run: dict[str, Any]) -> None:
        pane = self.query_one("#pending", Static)
        pending = run.get("pending") or {}
        pane.display = run["status"] == "needs_approval"
        if not pane.display:
            return
        if pending.get("kind") == "quality_gate":
            text = Text.assemble(("Quality gate: ", "bold"), one_line(pending.get("reason")))
        else:
            arguments = clean_text(
                json.dumps(pending.get("arguments"), indent=2, ensure_ascii=False)
            )
            lines = arguments.splitlines()
            if len(lines) > 12:
                lines = [*lines[:12], f"… {len(lines) - 12} more lines"]
            text = Text.assemble(
                ("Waits for approval: ", "bold"),
                one_line(f"{pending.get('tool')} ({pending.get('class')})") + "\n",
                ("\n".join(lines), "dim"),
                "\nwhy it asks: " + one_line(pending.get("reason")),
            )
        pane.update(text)

    def _show_actions(self, run: dict[str, Any] | None) -> None:
        if not self._built:
            return
        status = run["status"] if run else None
        for action, statuses in ACTIONS.items():
            allowed = status in statuses
            if action in ("apply", "critic") and run is not None:
                allowed = allowed and run["kind"] in CHANGE_KINDS
            self.query_one(f"#{action}", Button).display = allowed
