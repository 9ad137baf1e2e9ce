"""Pick one of the daemon's terminals to attach to: name or id, status, run, command."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option


def describe_terminal(term: dict[str, Any]) -> Text:
    """One line: ``name (id)  running  run r_…  /bin/sh -c …  1 viewer``."""
    text = Text(str(term.get("name") or term["id"]), style="bold")
    if term.get("name"):
        text.append(f" ({term['id']})", style="dim")
    status = str(term.get("status", "?"))
    if status == "exited":
        code, signal = term.get("exit_code"), term.get("signal")
        status = f"exited: signal {signal}" if signal else f"exited {code}"
    text.append(f"  {status}", style="green" if status == "running" else "dim")
    if term.get("run_id"):
        text.append(f"  run {term['run_id']}", style="cyan")
    text.append("  " + " ".join(term.get("command") or []))
    viewers = int(term.get("viewers") or 0)
    if viewers:
        text.append(f"  {viewers} viewer{'s' if viewers > 1 else ''}", style="dim")
    return text


class TerminalPicker(ModalScreen["dict[str, Any] | None"]):
    """Returns the chosen terminal (as ``GET /v1/terminals`` lists it), or None."""

    BINDINGS = [Binding("escape", "back_out", "Cancel")]
    AUTO_FOCUS = "#picker-list"

    def __init__(self, terminals: list[dict[str, Any]]) -> None:
        super().__init__()
        self._terminals = terminals

    def compose(self) -> ComposeResult:
        with Vertical(id="picker"):
            yield Static("Attach to a terminal", id="picker-title")
            yield OptionList(
                *(Option(describe_terminal(t), id=t["id"]) for t in self._terminals),
                id="picker-list",
            )
            yield Static("enter: attach · esc: cancel", id="picker-hint")

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        chosen = next(t for t in self._terminals if t["id"] == event.option.id)
        self.dismiss(chosen)

    def action_back_out(self) -> None:
        self.dismiss(None)
