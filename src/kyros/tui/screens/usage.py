"""The usage screen (``u``): what the model calls cost, as `kyros usage` shows it.

It reads ``GET /v1/usage`` (grouped by model, or by run: a pipeline's row then includes its
stages' calls) and ``GET /v1/usage/calls`` (the newest calls) in a thread worker, again every
few seconds while it is shown. Costs that are not known (no price for the model) are counted
apart and never shown or summed as $0; every call's cost source (listed, configured, reported,
unknown) is shown. A daemon that does not answer is said so on the screen; what was read last
stays shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Static
from textual.worker import Worker, WorkerState, get_current_worker

from kyros.client.cost_words import group_cost, money
from kyros.errors import DaemonUnreachable, KyrosError
from kyros.sanitize import clean_text, one_line
from kyros.tui.connection import Connection
from kyros.tui.widgets.footer import KeyBar

#: The newest calls listed.
CALLS_SHOWN = 50
#: Seconds between reads while the screen is shown, and after a failed read.
REFRESH_SECONDS = 5.0
RETRY_SECONDS = 1.0
#: From this many columns the calls show their time and outcome too.
WIDE = 110
#: The groupings ``g`` cycles through.
GROUPINGS = ("model", "run")
#: Counts up to this are written whole (``12,345``); above it in thousands (``123k``).
WHOLE_UP_TO = 99_999


def count(value: int) -> str:
    """A count in at most seven cells: ``12,345``, ``123k``, ``4.5M``."""
    if value <= WHOLE_UP_TO:
        return f"{value:,}"
    if value < 10_000_000:
        return f"{value / 1000:.0f}k" if value < 1_000_000 else f"{value / 1e6:.1f}M"
    return f"{value / 1e6:.0f}M"


def tokens(item: dict[str, Any]) -> str:
    """Tokens in → out."""
    return f"{count(int(item.get('tokens_in') or 0))}→{count(int(item.get('tokens_out') or 0))}"


def sources(by_source: dict[str, int], calls: int) -> str:
    """Where a group's costs come from: ``reported`` when every call's did, else each source
    with its calls, most first (``listed 3, unknown 1``)."""
    ranked = sorted(by_source.items(), key=lambda item: (-item[1], item[0]))
    if len(ranked) == 1 and ranked[0][1] == calls:
        return one_line(ranked[0][0], 20)
    return ", ".join(f"{one_line(name, 20)} {n}" for name, n in ranked) or "-"


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"


def totals_text(total: dict[str, Any]) -> Text:
    """The report's total: the known cost, the calls of unknown cost apart, the sources."""
    calls = int(total["calls"])
    unknown = int(total.get("unknown_cost_calls") or 0)
    text = Text()
    text.append("Known cost  ", style="bold")
    text.append(f"${float(total['cost']):.4f}", style="bold green")
    text.append(
        f"  of {plural(calls - unknown, 'priced call')} · {plural(calls, 'call')} in all · "
        f"{count(int(total['tokens_in']))} tokens in, {count(int(total['tokens_out']))} out"
    )
    failed = int(total.get("failed") or 0)
    if failed:
        text.append(f" · {failed:,} failed", style="red")
    text.append("\nUnpriced    ", style="bold")
    if unknown:
        text.append(plural(unknown, "call"), style="bold yellow")
        text.append(
            " of unknown cost (no price known for the model): not in the known cost; "
            "`kyros models show MODEL` says how to set one"
        )
    else:
        text.append("none: every call's cost is known", style="dim")
    text.append("\nCost from   ", style="bold")
    text.append(sources(dict(total.get("cost_sources") or {}), calls))
    return text


def _ordered_groups(report: dict[str, Any]) -> list[tuple[dict[str, Any], bool]]:
    """The report's groups as shown, each with whether it is a stage shown under its parent:
    grouped by run, a pipeline's row (which includes its stages' calls) comes first and its
    stages' rows follow it, indented."""
    groups = list(report["groups"])
    if report.get("by") != "run":
        return [(g, False) for g in groups]
    by_key = {g["key"]: g for g in groups}
    under = {child for g in groups for child in g.get("children") or [] if child in by_key}
    shown: list[tuple[dict[str, Any], bool]] = []
    for group in groups:
        if group["key"] in under:
            continue
        shown.append((group, False))
        shown.extend((by_key[c], True) for c in group.get("children") or [] if c in by_key)
    return shown


def groups_table(report: dict[str, Any]) -> Table:
    """One row per model (or run), most expensive first, and the total."""
    by = str(report.get("by") or "model")
    total = report["total"]
    unpriced = bool(total.get("unknown_cost_calls"))
    table = Table(box=None, header_style="bold", pad_edge=False, expand=True)
    # The key and the sources share what the numbers leave (80 columns: ~20 each).
    table.add_column(by.upper(), no_wrap=True, overflow="ellipsis", ratio=1, min_width=18)
    table.add_column("CALLS", justify="right", no_wrap=True, min_width=5)
    table.add_column("TOKENS", justify="right", no_wrap=True)
    table.add_column("COST", justify="right", no_wrap=True)
    if unpriced:
        table.add_column("UNPRICED", justify="right", no_wrap=True)
    table.add_column("COST FROM", no_wrap=True, overflow="ellipsis", ratio=1, min_width=8)

    def row(group: dict[str, Any], key: Text, style: str = "") -> None:
        unknown = int(group.get("unknown_cost_calls") or 0)
        cost = group_cost(group)
        if unpriced and 0 < unknown < int(group["calls"]):
            cost = money(group["cost"])  # the known part: the UNPRICED column counts the rest
        table.add_row(
            key,
            f"{int(group['calls']):,}",
            tokens(group),
            Text(cost, style="yellow" if "unknown" in cost else ""),
            *([Text(f"{unknown:,}" if unknown else "-", style="yellow" if unknown else "")]
              if unpriced else []),
            sources(dict(group.get("cost_sources") or {}), int(group["calls"])),
            style=style,
        )  # fmt: skip

    for group, stage in _ordered_groups(report):
        name = "(none)" if group["key"] is None else one_line(str(group["key"]), 200)
        key = Text(f"└ {name}" if stage else name, style="dim" if stage else "")
        stages = len(group.get("children") or [])
        if stages:
            key.append(f" +{plural(stages, 'stage')}", style="dim")
        row(group, key)
    table.add_section()
    row(total, Text("total"), style="bold")
    return table


def calls_table(calls: list[dict[str, Any]], *, wide: bool) -> Table:
    """The newest calls: model, run, tokens, cost (or ``unknown``) and its source; ``wide``
    adds when and the outcome."""
    table = Table(box=None, header_style="bold", pad_edge=False, expand=True)
    if wide:
        table.add_column("TIME (UTC)", no_wrap=True)
    table.add_column("MODEL", no_wrap=True, overflow="ellipsis", ratio=1, min_width=8)
    table.add_column("RUN", no_wrap=True, overflow="ellipsis")
    if wide:
        table.add_column("OUTCOME", no_wrap=True, overflow="ellipsis", max_width=20)
    table.add_column("TOKENS", justify="right", no_wrap=True)
    table.add_column("COST", justify="right", no_wrap=True)
    table.add_column("COST FROM", no_wrap=True, overflow="ellipsis", max_width=12)
    for call in calls:
        cost = call.get("cost")
        outcome = one_line(str(call.get("outcome") or ""), 40)
        cells: list[RenderableType] = []
        if wide:
            when = datetime.fromisoformat(str(call["created_at"])).astimezone(UTC)
            cells.append(when.strftime("%m-%d %H:%M:%S"))
        cells += [one_line(str(call.get("model") or ""), 200), one_line(call.get("run_id"), 40)]
        if wide:
            cells.append(Text(outcome, style="" if outcome == "ok" else "red"))
        cells += [
            tokens(call),
            Text(money(cost), style="yellow" if cost is None else ""),
            # Rows written before sources were recorded, and failed attempts, have none.
            one_line(call.get("cost_source"), 20) or "-",
        ]
        table.add_row(*cells)
    return table


class UsageScreen(Screen[None]):
    """The cost ledger: totals, a table by model or by run, and the newest calls."""

    AUTO_FOCUS = "#usage-body"
    BINDINGS = [
        Binding("escape", "back", "Runs"),
        Binding("g", "cycle_grouping", "By model/run"),
        Binding("r", "refresh", "Refresh"),
        Binding("question_mark", "help", "Help"),
    ]

    @dataclass
    class Read(Message):
        """What one read of the ledger saw."""

        by: str
        report: dict[str, Any]
        calls: list[dict[str, Any]]
        at: datetime

    @dataclass
    class ReadFailed(Message):
        message: str

    def __init__(self, connection: Connection, *, by: str = "model") -> None:
        super().__init__()
        if by not in GROUPINGS:
            raise ValueError(f"usage is grouped by one of {', '.join(GROUPINGS)}, not {by!r}")
        self.connection = connection
        self.by = by
        self.report: dict[str, Any] | None = None
        self.calls: list[dict[str, Any]] = []
        #: When the shown report was read; the last failure, while it lasts.
        self.read_at: datetime | None = None
        self.problem: str | None = None

    def compose(self) -> ComposeResult:
        yield Static("", id="usage-head")
        with VerticalScroll(id="usage-body"):
            yield Static("Reading the usage…", id="usage-totals")
            yield Static("", id="usage-groups")
            yield Static("", id="usage-calls")
        yield KeyBar()

    def on_mount(self) -> None:
        self._render_head()
        self._read()

    # --- reading ------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="usage", name="read usage", exit_on_error=False)
    def _read(self) -> None:
        worker = get_current_worker()
        conn = self.connection
        while not (worker.is_cancelled or conn.stopping):
            by = self.by
            try:
                report, calls = conn.usage(by, calls=CALLS_SHOWN)
            except DaemonUnreachable as exc:
                self.post_message(self.ReadFailed(f"the daemon does not answer: {exc.message}"))
                delay = RETRY_SECONDS
            except KyrosError as exc:
                self.post_message(self.ReadFailed(exc.message))
                delay = REFRESH_SECONDS
            else:
                if worker.is_cancelled:  # the grouping changed meanwhile: a new read runs
                    return
                self.post_message(self.Read(by, report, calls, datetime.now(UTC)))
                delay = REFRESH_SECONDS
            if conn.pause(delay):
                return

    def on_usage_screen_read(self, message: Read) -> None:
        if message.by != self.by:
            return  # read before the grouping changed
        self.report, self.calls, self.read_at = message.report, message.calls, message.at
        self.problem = None
        self._render_head()
        self._render_body()

    def on_usage_screen_read_failed(self, message: ReadFailed) -> None:
        self.problem = message.message
        self._render_head()
        if self.report is None:
            self.query_one("#usage-totals", Static).update(
                Text("No usage to show: " + clean_text(message.message), style="bold red")
            )

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A read that failed unexpectedly (a bug): a toast, not a traceback."""
        if event.state is WorkerState.ERROR:
            error = event.worker.error
            self.notify(
                f"{event.worker.name}: {type(error).__name__}: {error}",
                title="internal error",
                severity="error",
                timeout=10,
            )

    # --- drawing ------------------------------------------------------------------------

    def _render_head(self) -> None:
        head = Text.assemble(("Usage", "bold"), f" · by {self.by} · ")
        if self.problem is not None:
            # Before the address: a narrow terminal cuts the line's end, not the problem.
            if self.read_at is not None:
                head.append(f"as read at {self.read_at:%H:%M:%S} · ", style="italic")
            head.append("✖ " + one_line(self.problem, 200) + " · ", style="bold red")
        head.append(one_line(self.connection.label, 80))
        self.query_one("#usage-head", Static).update(head)

    def _render_body(self) -> None:
        report = self.report
        if report is None:
            return
        totals = self.query_one("#usage-totals", Static)
        groups = self.query_one("#usage-groups", Static)
        calls = self.query_one("#usage-calls", Static)
        if not report["groups"]:
            totals.update(Text("No model calls recorded yet.", style="dim"))
            groups.update("")
            calls.update("")
            return
        totals.update(totals_text(report["total"]))
        title = Text(f"By {self.by}", style="bold underline")
        if self.by == "run":
            title.append("  (a pipeline's row includes its stages')", style="dim")
        groups.update(Group(title, groups_table(report)))
        wide = self.size.width >= WIDE
        heading = Text(f"Newest calls ({len(self.calls)})", style="bold underline")
        calls.update(Group(heading, calls_table(self.calls, wide=wide)))

    def on_resize(self) -> None:
        self._render_body()  # the calls' time and outcome come and go with the width

    # --- actions ------------------------------------------------------------------------

    def action_back(self) -> None:
        self.dismiss(None)

    def action_cycle_grouping(self) -> None:
        self.by = GROUPINGS[(GROUPINGS.index(self.by) + 1) % len(GROUPINGS)]
        self.report = None
        self.query_one("#usage-totals", Static).update(f"Reading the usage by {self.by}…")
        self.query_one("#usage-groups", Static).update("")
        self.query_one("#usage-calls", Static).update("")
        self._render_head()
        self._read()

    def action_refresh(self) -> None:
        self._read()

    def action_help(self) -> None:
        from kyros.tui.screens.help import HelpScreen

        self.app.push_screen(HelpScreen())
