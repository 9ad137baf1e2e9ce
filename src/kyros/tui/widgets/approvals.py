"""The approvals pane: every run waiting for a human, what it waits on; ``a``/``d`` answer."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import DataTable

from kyros.tui.cells import one_line, waits_on


class Approvals(DataTable[Any]):
    """Runs in ``needs_approval`` by id, oldest first (the longest wait on top)."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(cursor_type="row", id=id, classes=classes)
        self._cells: dict[str, tuple[str, str, str]] = {}
        self.waiting: dict[str, dict[str, Any]] = {}

    def on_mount(self) -> None:
        self.add_column("RUN", key="id", width=18)
        self.add_column("WAITS ON", key="waits", width=20)
        self.add_column("GOAL", key="goal")

    def update_waiting(self, runs: list[dict[str, Any]]) -> None:
        self.waiting = {r["id"]: r for r in runs}
        for gone in [k for k in self._cells if k not in self.waiting]:
            self.remove_row(gone)
            del self._cells[gone]
        added = False
        for run in sorted(runs, key=lambda r: (r["created_at"], r["id"])):
            row = (run["id"], one_line(waits_on(run), 100), one_line(run.get("goal"), 300))
            old = self._cells.get(run["id"])
            if old is None:
                self.add_row(*(Text(v, no_wrap=True) for v in row), key=run["id"])
                added = True
            elif old != row:
                self.update_cell(run["id"], "waits", Text(row[1], no_wrap=True))
                self.update_cell(run["id"], "goal", Text(row[2], no_wrap=True))
            self._cells[run["id"]] = row
        if added:
            waiting = self.waiting
            self.sort("id", key=lambda cell: (waiting[str(cell)]["created_at"], str(cell)))
        self.border_title = f"Approvals · {len(runs)}" if runs else "Approvals"

    @property
    def selected_run_id(self) -> str | None:
        if not self.row_count:
            return None
        key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        return None if key.value is None else str(key.value)

    def clear_waiting(self) -> None:
        self._cells.clear()
        self.waiting.clear()
        self.clear()
