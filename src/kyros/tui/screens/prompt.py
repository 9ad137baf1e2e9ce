"""A one-line question (a deny reason, a daemon address): ``enter`` answers, ``esc`` backs out."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static


class PromptScreen(ModalScreen["str | None"]):
    """Returns the text typed (possibly empty), or None when dismissed."""

    BINDINGS = [Binding("escape", "back_out", "Cancel")]
    AUTO_FOCUS = "#prompt-input"

    def __init__(self, question: str, *, placeholder: str = "", value: str = "") -> None:
        super().__init__()
        self._question = question
        self._placeholder = placeholder
        self._value = value

    def compose(self) -> ComposeResult:
        with Vertical(id="prompt"):
            yield Static(self._question, id="prompt-question")
            yield Input(value=self._value, placeholder=self._placeholder, id="prompt-input")
            yield Static("enter: ok · esc: cancel", id="prompt-hint")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(event.value.strip())

    def action_back_out(self) -> None:
        self.dismiss(None)
