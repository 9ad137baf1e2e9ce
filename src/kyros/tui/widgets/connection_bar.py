"""The header: which daemon the console talks to and whether it answers."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

#: (symbol, words, CSS class) per link state.
LOOKS = {
    "connected": ("●", "connected", "-connected"),
    "reconnecting": ("◌", "reconnecting…", "-reconnecting"),
    "failing": ("✖", "refused", "-failing"),
}


class ConnectionBar(Widget):
    """``kyros · unix:///…/kyros.sock · ● connected`` (its colour follows the state)."""

    label: reactive[str] = reactive("")
    state: reactive[str] = reactive("connected")
    detail: reactive[str | None] = reactive(None)

    def __init__(self, label: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.set_reactive(ConnectionBar.label, label)

    def render(self) -> Text:
        symbol, words, _ = LOOKS.get(self.state, ("?", self.state, ""))
        text = Text.assemble(("kyros", "bold"), "  ", self.label, "  ")
        text.append(f"{symbol} {words}", style="bold")
        if self.detail and self.state != "connected":
            text.append(f"  {self.detail}", style="italic")
        return text

    def watch_state(self, old: str, new: str) -> None:
        self.remove_class(LOOKS.get(old, ("", "", "-unknown"))[2])
        self.add_class(LOOKS.get(new, ("", "", "-unknown"))[2])

    def on_mount(self) -> None:
        self.add_class(LOOKS.get(self.state, ("", "", "-unknown"))[2])
