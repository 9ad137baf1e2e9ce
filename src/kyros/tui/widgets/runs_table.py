"""The runs pane: every run seen, live, filtered by text and sorted by any column.

Polls bring the newest runs every second. A run whose copy did not change costs a comparison;
a changed run rewrites only the cells whose text changed; an age is rewritten only when its
text turns over (``59s`` → ``1m``), each row knowing when that is due. New runs add rows and
sort once. So a poll over 10,000 rows costs about a millisecond where re-deriving every row
took ~90 ms on a 2-core machine, and the cursor stays on its run.
"""

from __future__ import annotations

import gc
import math
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, TypeVar

from rich.text import Text
from textual.cache import LRUCache
from textual.message import Message
from textual.timer import Timer
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey, RowKey

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
#: Columns a narrow pane leaves out, in this order, so that id, status, kind, age and the goal
#: (at least :data:`MIN_GOAL_WIDTH`) stay: all seven take 95 cells, these five 73.
OPTIONAL_COLUMNS = ("agent", "cost")
#: Hiding more rows than this at once refills the table (DataTable removes a row in O(rows)).
REBUILD_AFTER = 50
#: The goal column takes the width the others leave (on resize), at least this much.
MIN_GOAL_WIDTH = 16
#: The order a click on a header (or ``s``) sorts by; ``age`` means newest first.
SORTS = ("age", "status", "kind", "agent", "cost", "goal", "id")
#: Rows added since the heap was last settled (see :meth:`RunsTable._settle`) that settle it
#: again, and the delay before: the collection pauses the console once, after the rows drew.
SETTLE_AFTER = 500
SETTLE_DELAY = 1.0
#: (below this many seconds, the age's text turns over every so many): as :func:`age` counts.
AGE_STEPS = ((60.0, 1.0), (3600.0, 60.0), (86400.0, 3600.0), (math.inf, 86400.0))

K = TypeVar("K")


def _drop(cache: LRUCache[K, Any], stale: Callable[[K], bool]) -> None:
    """Discard the entries of ``cache`` whose key is ``stale``."""
    for key in list(cache.keys()):
        if stale(key):
            cache.discard(key)


def _age_turns(created: float, now: float) -> float:
    """When (epoch seconds) the age of a run created at ``created`` next reads differently."""
    seconds = max(0.0, now - created)
    step = next(step for below, step in AGE_STEPS if seconds < below)
    return created + (seconds // step + 1) * step


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
        #: The texts of the rows shown, by run id.
        self._cells: dict[str, tuple[str, ...]] = {}
        #: Each run's ``created_at``, parsed once (ages and the age order).
        self._created: dict[str, datetime] = {}
        #: When each shown row's age next reads differently (epoch seconds).
        self._age_due: dict[str, float] = {}
        #: Rows added since the heap was settled; the first fill settles what start-up built.
        self._unsettled = SETTLE_AFTER
        self._settle_timer: Timer | None = None
        #: The columns shown (keys of :data:`COLUMNS`): all unless the pane is narrow.
        self.shown_columns: tuple[str, ...] = tuple(key for key, _, _ in COLUMNS)
        self.filter_text = ""
        self.sort_column = "age"
        #: Newest first for ``age``; A→Z (cheapest first) for the others.
        self.sort_reverse = True

    def on_mount(self) -> None:
        self._add_columns()

    def _add_columns(self) -> None:
        for key, label, width in COLUMNS:
            if key in self.shown_columns:
                self.add_column(label, key=key, width=width)

    # --- data -------------------------------------------------------------------------------

    def _row(self, run_id: str, now: datetime) -> tuple[str, ...]:
        """The texts of ``run_id``'s row; notes when its age is due to change."""
        run, created = self.runs[run_id], self._created[run_id]
        self._age_due[run_id] = _age_turns(created.timestamp(), now.timestamp())
        return (
            run_id,
            run["status"],
            run["kind"],
            run.get("agent") or "",
            money(run.get("cost")),
            age(created, now),
            one_line(run.get("goal"), 300),
        )

    def _sort_value(self, run_id: str, column: str) -> Any:
        if column in ("age", "id"):
            # Newest first: ids are time-ordered too, but created_at says so explicitly.
            return (self._created[run_id], run_id)
        run = self.runs[run_id]
        if column == "cost":
            return (float(run.get("cost") or 0.0), run_id)
        return (str(run.get(column) or ""), run_id)

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
        """Merge a poll's runs: rows change where a run changed or an age turned over."""
        changed: list[str] = []
        for run in runs:
            run_id = run["id"]
            if self.runs.get(run_id) == run:
                # The copy already held stays: a fresh one per poll would only feed the
                # garbage collector's oldest generation.
                continue
            self.runs[run_id] = run
            self._created[run_id] = parse_time(run["created_at"])
            changed.append(run_id)
        self._sync(changed)

    def clear_runs(self) -> None:
        """Forget every run (the console now talks to another daemon)."""
        self.runs.clear()
        self._cells.clear()
        self._created.clear()
        self._age_due.clear()
        self.clear()

    def set_filter(self, text: str) -> None:
        self.filter_text = text.strip()
        self._sync(None)

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

    def _sync(self, changed: list[str] | None) -> None:
        """Bring the rows in line with :attr:`runs`: every run when ``changed`` is None (the
        filter changed), else the runs in ``changed`` and the rows whose age is due."""
        now = self._clock()
        selected = self.selected_run_id  # the cursor stays on its run, wherever it moves
        matching: list[str] | None = None
        if changed is None:
            touched = matching = [run_id for run_id, run in self.runs.items() if self._matches(run)]
            keep = set(touched)
            gone = [run_id for run_id in self._cells if run_id not in keep]
        else:
            stamp = now.timestamp()
            due = [run_id for run_id, when in self._age_due.items() if when <= stamp]
            touched, gone = [], []
            for run_id in dict.fromkeys([*changed, *due]):
                if self._matches(self.runs[run_id]):
                    touched.append(run_id)
                elif run_id in self._cells:
                    gone.append(run_id)
        if len(gone) > REBUILD_AFTER:
            if matching is None:
                matching = [run_id for run_id, run in self.runs.items() if self._matches(run)]
            self._rebuild(matching, now, selected)
            return
        for run_id in gone:
            self.remove_row(run_id)  # O(rows) each in DataTable: few only (see _rebuild)
            del self._cells[run_id]
            self._age_due.pop(run_id, None)
        reorder = False
        new_rows: list[tuple[str, tuple[str, ...]]] = []
        changes: list[tuple[str, str, str]] = []
        for run_id in touched:
            row = self._row(run_id, now)
            old = self._cells.get(run_id)
            if old is None:
                new_rows.append((run_id, row))
                continue
            if row == old:
                continue
            for (column, _, _), before, after in zip(COLUMNS, old, row, strict=True):
                if before != after:
                    changes.append((run_id, column, after))
                    # Ages move every second; the age order (created_at) does not.
                    reorder = reorder or column == self.sort_column != "age"
            self._cells[run_id] = row
        if changes:
            self._write_cells(changes)
        for run_id, row in new_rows:
            self._add(run_id, row)
        if new_rows or reorder:
            self._sort(selected)
        self._settle_soon()

    def _write_cells(self, changes: list[tuple[str, str, str]]) -> None:
        """Write ``(run id, column, text)`` cells, redrawing only their rows.

        DataTable's ``update_cell`` bumps an update count that is part of the key of every
        cache it renders from: the next paint redraws every visible row (~20 ms for 34 rows
        on a 2-core machine) and rebuilds the row order and line offsets over every row
        (~50 ms with 10,000). A changed cell moves no row: the count stays, and only the
        changed cells' renders, and their rows' (keyed by row key or index), are dropped.
        These caches are DataTable's own (textual 8.2); the runs table's test checks what is
        drawn after a change, so a change of theirs shows.
        """
        changes = [change for change in changes if change[1] in self.shown_columns]
        if not changes:
            return
        count = self._update_count
        for run_id, column, text in changes:
            self.update_cell(run_id, column, self._cell(column, text))
        self._update_count = count
        cells = {(RowKey(run_id), ColumnKey(column)) for run_id, column, _ in changes}
        rows = {row for row, _ in cells}
        indexes = {self.get_row_index(key) for key in rows}
        _drop(self._cell_render_cache, lambda key: (key[0], key[1]) in cells)
        _drop(self._row_render_cache, lambda key: key[0] in rows)
        _drop(self._row_renderable_cache, lambda key: key[1] in indexes)
        self._line_cache.clear()  # lines are joined from the rows' renders: cheap to redo
        self.refresh()

    def _settle_soon(self) -> None:
        if self._unsettled >= SETTLE_AFTER and self._settle_timer is None:
            self._settle_timer = self.set_timer(SETTLE_DELAY, self._settle)

    def _settle(self) -> None:
        """Collect garbage once, then leave everything alive out of future collections.

        Rows live as long as the console, and so does what start-up built (modules, widgets):
        every full collection walked them again, freeing none: ~50 ms idle, ~150 ms with
        10,000 rows on a 2-core machine, a frozen screen each time. Frozen objects are still
        freed once nothing refers to them (rows and runs hold no reference cycles); cyclic
        garbage would not be, so it is collected first. The last collection, of what is not
        frozen (almost nothing), resets the collector's count of long-lived objects: the next
        full collection comes when a quarter of that count is added, not a quarter of
        everything frozen (~100,000 objects, walked in one pause).
        """
        self._settle_timer = None
        self._unsettled = 0
        gc.collect()
        gc.freeze()
        gc.collect()

    def _add(self, run_id: str, row: tuple[str, ...]) -> None:
        shown = self.shown_columns
        cells = (self._cell(c, v) for (c, _, _), v in zip(COLUMNS, row, strict=True) if c in shown)
        self.add_row(*cells, key=run_id)
        self._cells[run_id] = row
        self._unsettled += 1

    def _rebuild(self, matching: list[str], now: datetime, selected: str | None) -> None:
        """Refill the table in sorted order: what a filter that hides many rows costs."""
        self.clear()
        self._cells.clear()
        self._age_due.clear()
        column = self.sort_column
        ordered = sorted(
            matching,
            key=lambda run_id: self._sort_value(run_id, column),
            reverse=self.sort_reverse,
        )
        for run_id in ordered:
            self._add(run_id, self._row(run_id, now))
        self._keep_cursor(selected)
        self._settle_soon()

    def _keep_cursor(self, selected: str | None) -> None:
        """Put the cursor back on ``selected``'s row, or on the first row."""
        if selected is not None and selected in self._cells:
            self.move_cursor(row=self.get_row_index(selected), scroll=False)
        elif self.row_count:
            self.move_cursor(row=0)

    def _sort(self, selected: str | None = None) -> None:
        column = self.sort_column
        self.sort(
            ColumnKey("id"),
            key=lambda cell: self._sort_value(str(cell), column),
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

    def _fitting(self, room: int) -> tuple[str, ...]:
        """The columns that fit in ``room`` cells, leaving out :data:`OPTIONAL_COLUMNS` in turn."""
        pad = 2 * self.cell_padding
        left_out: list[str] = []
        for column in (None, *OPTIONAL_COLUMNS):
            if column is not None:
                left_out.append(column)
            keys = tuple(key for key, _, _ in COLUMNS if key not in left_out)
            fixed = sum(width + pad for key, _, width in COLUMNS if key in keys and key != "goal")
            if room - fixed - pad >= MIN_GOAL_WIDTH:
                break
        return keys

    def _show_columns(self, keys: tuple[str, ...]) -> None:
        """Show only ``keys``. DataTable cannot hide a column or put one back in its place, so
        the table is refilled, as a filter that hides many rows does: only when a resize
        crosses a width where columns give way (10,000 rows took 2.5 s on a 2-core machine at
        load 10). The screen calls :meth:`fit` before the first poll fills the table."""
        selected = self.selected_run_id
        self.shown_columns = keys
        self.clear(columns=True)
        self._add_columns()
        matching = [run_id for run_id, run in self.runs.items() if self._matches(run)]
        self._rebuild(matching, self._clock(), selected)

    def fit(self, room: int) -> None:
        """Show the columns that fit in ``room`` cells. The screen calls it with its estimate
        before the first frame; the table knows its width only a frame later (~150 ms)."""
        keys = self._fitting(room)
        if keys != self.shown_columns:
            self._show_columns(keys)

    def on_resize(self) -> None:
        """Show the columns that fit; give the goal column the width the others leave."""
        room = self.scrollable_content_region.width
        if room > 0:  # not laid out yet: keep what is shown
            self.fit(room)
        pad = 2 * self.cell_padding
        fixed = sum(
            width + pad for key, _, width in COLUMNS if key in self.shown_columns and key != "goal"
        )
        width = max(MIN_GOAL_WIDTH, room - fixed - pad)
        column = self.columns.get(ColumnKey("goal"))
        if column is not None and column.width != width:
            column.width = width
            self._require_update_dimensions = True  # DataTable has no public re-measure
            self.refresh()

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        if event.column_key.value is not None:
            self.sort_by(str(event.column_key.value))
