"""The runs pane: every run seen, live, filtered by text and sorted by any column.

Polls bring the newest runs every second; the table changes only the cells whose text changed,
adds rows for new runs and sorts again only when the order may have moved, so thousands of rows
cost a few milliseconds per poll instead of a rebuild (and the cursor stays on its run).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from rich.text import Text
from textual.message import Message
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey

from kyros.tui.cells import age, money, one_line, parse_time, status_text

#: (key, label, width). Fixed widths: no width pass over every row on each update. The goal
#: comes last: a narrow pane cuts it, not the columns after it.
COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("id", "ID", 18),
    ("status", "STATUS", 16),
    ("kind", "KIND", 9),
    ("agent", "AGENT", 11),
    ("cost", "COST", 7),
    ("age", "AGE", 4),
    ("goal", "GOAL", 40),
)
#: Hiding more rows than this at once refills the table (DataTable removes a row in O(rows)).
REBUILD_AFTER = 50
#: The goal column takes the width the others leave (on resize), at least this much.
MIN_GOAL_WIDTH = 16
#: The order a click on a header (or ``s``) sorts by; ``age`` means newest first.
SORTS = ("age", "status", "kind", "agent", "cost", "goal", "id")


def _sort_value(run: dict[str, Any], column: str) -> Any:
    if column in ("age", "id"):
        # Newest first: ids are time-ordered too, but created_at says so explicitly.
        return (parse_time(run["created_at"]).timestamp(), run["id"])
    if column == "cost":
        return (float(run.get("cost") or 0.0), run["id"])
    return (str(run.get(column) or ""), run["id"])


class RunsTable(DataTable[Any]):
    """Runs by id: the cells below, a text filter and a sort column."""

    DEFAULT_CSS = """
    RunsTable { height: 1fr; }
    """

    class SortChanged(Message):
        """The sort column or direction changed (the pane's title says which)."""

    def __init__(
        self, *, clock: Callable[[], datetime], id: str | None = None, classes: str | None = None
    ) -> None:
        super().__init__(cursor_type="row", id=id, classes=classes)
        self._clock = clock
        #: Every run seen, by id (rows that match the filter are in the table).
        self.runs: dict[str, dict[str, Any]] = {}
        self._cells: dict[str, tuple[str, ...]] = {}
        self.filter_text = ""
        self.sort_column = "age"
        #: Newest first for ``age``; A→Z (cheapest first) for the others.
        self.sort_reverse = True

    def on_mount(self) -> None:
        for key, label, width in COLUMNS:
            self.add_column(label, key=key, width=width)

    # --- data -------------------------------------------------------------------------------

    def _row(self, run: dict[str, Any], now: datetime) -> tuple[str, ...]:
        return (
            run["id"],
            run["status"],
            run["kind"],
            run.get("agent") or "",
            money(run.get("cost")),
            age(run["created_at"], now),
            one_line(run.get("goal"), 300),
        )

    @staticmethod
    def _cell(column: str, value: str) -> Text:
        # Text, never str: DataTable reads a str cell as markup ("[b]" in a goal).
        if column == "status":
            return status_text(value)
        if column == "cost":
            return Text(value, no_wrap=True, justify="right")
        return Text(value, no_wrap=True, overflow="ellipsis")

    def _matches(self, run: dict[str, Any]) -> bool:
        if not self.filter_text:
            return True
        haystack = " ".join(
            str(run.get(k) or "") for k in ("id", "status", "kind", "goal", "agent", "model")
        ).lower()
        return all(word in haystack for word in self.filter_text.lower().split())

    def update_runs(self, runs: Iterable[dict[str, Any]]) -> None:
        """Merge a poll's runs; refresh every visible row's changed cells (ages move too)."""
        for run in runs:
            self.runs[run["id"]] = run
        self._sync()

    def clear_runs(self) -> None:
        """Forget every run (the console now talks to another daemon)."""
        self.runs.clear()
        self._cells.clear()
        self.clear()

    def set_filter(self, text: str) -> None:
        self.filter_text = text.strip()
        self._sync()

    def sort_by(self, column: str) -> None:
        """Sort by ``column``; the same column again reverses the order."""
        if column == self.sort_column:
            self.sort_reverse = not self.sort_reverse
        else:
            self.sort_column, self.sort_reverse = column, column == "age"
        self._sort(self.selected_run_id)
        self.post_message(self.SortChanged())

    def cycle_sort(self) -> None:
        nxt = SORTS[(SORTS.index(self.sort_column) + 1) % len(SORTS)]
        self.sort_by(nxt)

    @property
    def shown(self) -> int:
        """Rows that match the filter."""
        return self.row_count

    def _sync(self) -> None:
        now = self._clock()
        reorder = False
        selected = self.selected_run_id  # the cursor stays on its run, wherever it moves
        matching = [run_id for run_id, run in self.runs.items() if self._matches(run)]
        keep = set(matching)
        gone = [run_id for run_id in self._cells if run_id not in keep]
        if len(gone) > REBUILD_AFTER:
            self._rebuild(matching, now, selected)
            return
        for run_id in gone:
            self.remove_row(run_id)  # O(rows) each in DataTable: few only (see _rebuild)
            del self._cells[run_id]
        new_rows: list[tuple[str, tuple[str, ...]]] = []
        for run_id in matching:
            row = self._row(self.runs[run_id], now)
            old = self._cells.get(run_id)
            if old is None:
                new_rows.append((run_id, row))
                continue
            if row == old:
                continue
            for (column, _, _), before, after in zip(COLUMNS, old, row, strict=True):
                if before != after:
                    self.update_cell(run_id, column, self._cell(column, after))
                    # Ages move every second; the age order (created_at) does not.
                    reorder = reorder or column == self.sort_column != "age"
            self._cells[run_id] = row
        for run_id, row in new_rows:
            self._add(run_id, row)
        if new_rows or reorder:
            self._sort(selected)

    def _add(self, run_id: str, row: tuple[str, ...]) -> None:
        cells = (self._cell(c, v) for (c, _, _), v in zip(COLUMNS, row, strict=True))
        self.add_row(*cells, key=run_id)
        self._cells[run_id] = row

    def _rebuild(self, matching: list[str], now: datetime, selected: str | None) -> None:
        """Refill the table in sorted order: what a filter that hides many rows costs."""
        self.clear()
        self._cells.clear()
        column = self.sort_column
        ordered = sorted(
            matching,
            key=lambda run_id: _sort_value(self.runs[run_id], column),
            reverse=self.sort_reverse,
        )
        for run_id in ordered:
            self._add(run_id, self._row(self.runs[run_id], now))
        self._keep_cursor(selected)

    def _keep_cursor(self, selected: str | None) -> None:
        """Put the cursor back on ``selected``'s row, or on the first row."""
        if selected is not None and selected in self._cells:
            self.move_cursor(row=self.get_row_index(selected), scroll=False)
        elif self.row_count:
            self.move_cursor(row=0)

    def _sort(self, selected: str | None = None) -> None:
        column = self.sort_column
        runs = self.runs
        self.sort(
            ColumnKey("id"),
            key=lambda cell: _sort_value(runs[str(cell)], column),
            reverse=self.sort_reverse,
        )
        self._keep_cursor(selected)

    @property
    def selected_run_id(self) -> str | None:
        if not self.row_count:
            return None
        try:
            key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        except Exception:  # no cell under the cursor (an empty table)
            return None
        return None if key.value is None else str(key.value)

    def select_run(self, run_id: str) -> bool:
        """Move the cursor to ``run_id``'s row; False when it is not shown."""
        if run_id not in self._cells:
            return False
        self.move_cursor(row=self.get_row_index(run_id))
        return True

    def on_resize(self) -> None:
        """Give the goal column the width the other columns leave."""
        pad = 2 * self.cell_padding
        fixed = sum(width + pad for key, _, width in COLUMNS if key != "goal")
        width = max(MIN_GOAL_WIDTH, self.scrollable_content_region.width - fixed - pad)
        column = self.columns.get(ColumnKey("goal"))
        if column is not None and column.width != width:
            column.width = width
            self._require_update_dimensions = True  # DataTable has no public re-measure
            self.refresh()

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        if event.column_key.value is not None:
            self.sort_by(str(event.column_key.value))
