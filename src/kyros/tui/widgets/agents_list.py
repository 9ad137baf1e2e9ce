"""The agents pane: each agent's role, model, live status and the run it works on."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import DataTable

from kyros.tui.cells import agent_status_text, one_line

#: The live status first: it is what changes; the model (often long) last.
KEYS = ("name", "status", "role", "run", "model")
LABELS = ("AGENT", "STATUS", "ROLE", "RUN", "MODEL")


class AgentsList(DataTable[Any]):
    """Agents by name, updated in place from each poll."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(cursor_type="row", id=id, classes=classes)
        self._cells: dict[str, tuple[str, ...]] = {}

    def on_mount(self) -> None:
        for key, label in zip(KEYS, LABELS, strict=True):
            self.add_column(label, key=key)

    @staticmethod
    def _row(agent: dict[str, Any]) -> tuple[str, ...]:
        return (
            agent["name"],
            agent.get("status") or "",
            agent.get("role") or "",
            agent.get("current_run") or "",
            _model_cell(agent),
        )

    @staticmethod
    def _cell(key: str, value: str) -> Text:
        return (
            agent_status_text(value)
            if key == "status"
            else Text(one_line(value, 200), no_wrap=True)
        )

    def update_agents(self, agents: list[dict[str, Any]]) -> None:
        names = {a["name"] for a in agents}
        for gone in [n for n in self._cells if n not in names]:
            self.remove_row(gone)
            del self._cells[gone]
        for agent in agents:
            row = self._row(agent)
            old = self._cells.get(agent["name"])
            if old is None:
                cells = (self._cell(k, v) for k, v in zip(KEYS, row, strict=True))
                self.add_row(*cells, key=agent["name"])
            elif old != row:
                for key, before, after in zip(KEYS, old, row, strict=True):
                    if before != after:
                        self.update_cell(
                            agent["name"], key, self._cell(key, after), update_width=True
                        )
            self._cells[agent["name"]] = row

    def current_run(self, name: str) -> str | None:
        row = self._cells.get(name)
        return row[3] or None if row else None

    @property
    def names(self) -> list[str]:
        return sorted(self._cells)

    def clear_agents(self) -> None:
        self._cells.clear()
        self.clear()


def _model_cell(agent: dict[str, Any]) -> str:
    """The model, and for an offline agent why it cannot be called."""
    model = agent.get("model") or "default"
    if agent.get("status") == "offline" and agent.get("problem"):
        return f"{model} — {agent['problem']}"
    return model
