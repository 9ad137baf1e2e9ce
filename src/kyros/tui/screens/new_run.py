"""The new-run form: kind, goal, workspace, agent, model, budget (a modal; ``ctrl+s`` starts).

Opened to continue a run, it starts the new run on that run's conversation (``continue_run``).

It checks what it can without the daemon (a goal, a directory, a number) and returns the body
of ``POST /v1/runs/{kind}``; the daemon checks the rest and its refusal shows as a toast.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

KINDS = ("plan", "implement", "critic", "pipeline")
#: What the optional run field means per kind (hidden for the others).
TARGET_LABELS = {"implement": "Plan run", "critic": "Run to review"}
TARGET_HINTS = {
    "implement": "follow this plan run's plan (optional)",
    "critic": "the run whose diff to review",
}


@dataclass(frozen=True)
class NewRun:
    """What the form asks the daemon for."""

    kind: str
    body: dict[str, Any]


class NewRunScreen(ModalScreen["NewRun | None"]):
    """Ask for a run's kind, goal, workspace, agent, model and budget."""

    BINDINGS = [
        Binding("escape", "dismiss_form", "Cancel"),
        Binding("ctrl+s", "submit", "Start run", priority=True),
    ]

    def __init__(
        self,
        kind: str = "plan",
        *,
        cwd: Path,
        agents: list[str],
        target_run: str | None = None,
        continue_run: str | None = None,
    ) -> None:
        super().__init__()
        self._kind = kind if kind in KINDS else "plan"
        self._cwd = cwd
        self._agents = agents
        self._target_run = target_run
        self._continue_run = continue_run

    def compose(self) -> ComposeResult:
        with Vertical(id="form"):
            title = f"Continue run {self._continue_run}" if self._continue_run else "New run"
            yield Static(title, id="form-title")
            with Grid(id="form-grid"):
                yield Label("Kind")
                yield Select(
                    [(k, k) for k in KINDS],
                    value=self._kind,
                    allow_blank=False,
                    id="kind",
                    compact=True,
                )
                yield Label("Goal")
                yield Input(placeholder="what you want done", id="goal", compact=True)
                yield Label("Run", id="target-label")
                yield Input(value=self._target_run or "", id="target", compact=True)
                yield Label("Workspace")
                yield Input(value=str(self._cwd), id="workspace", compact=True)
                yield Label("Agent")
                yield Select(
                    [(a, a) for a in self._agents],
                    prompt="the kind's agent",
                    id="agent",
                    compact=True,
                )
                yield Label("Model")
                yield Input(
                    placeholder="the agent's model ('demo': scripted, no key needed)",
                    id="model",
                    compact=True,
                )
                yield Label("Budget USD")
                yield Input(placeholder="no cap", id="budget", type="number", compact=True)
            yield Static("", id="form-error")
            with Horizontal(id="form-buttons"):
                yield Button("Start  ctrl+s", id="start", variant="primary", compact=True)
                yield Button("Cancel  esc", id="cancel-form", compact=True)

    def on_mount(self) -> None:
        self._kind_changed(self._kind)
        self.query_one("#goal", Input).focus()

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "kind" and isinstance(event.value, str):
            self._kind_changed(event.value)

    def _kind_changed(self, kind: str) -> None:
        self._kind = kind
        shown = kind in TARGET_LABELS
        label = self.query_one("#target-label", Label)
        target = self.query_one("#target", Input)
        label.display = target.display = shown
        if shown:
            label.update(TARGET_LABELS[kind])
            target.placeholder = TARGET_HINTS[kind]
        self.query_one("#goal", Input).placeholder = (
            "what the change was meant to do (optional)"
            if kind == "critic"
            else "what to do next"
            if self._continue_run
            else "what you want done"
        )

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "start":
            self.action_submit()
        else:
            self.dismiss(None)

    def action_dismiss_form(self) -> None:
        self.dismiss(None)

    def action_submit(self) -> None:
        try:
            result = self._collect()
        except ValueError as exc:
            self.query_one("#form-error", Static).update(str(exc))
            return
        self.dismiss(result)

    def _value(self, widget_id: str) -> str:
        return self.query_one(f"#{widget_id}", Input).value.strip()

    def _collect(self) -> NewRun:
        kind = self._kind
        goal = self._value("goal")
        target = self._value("target") if kind in TARGET_LABELS else ""
        if not goal and kind != "critic":
            raise ValueError("Say what you want done: the goal is empty.")
        if kind == "critic" and not target:
            raise ValueError("Give the run whose change the critic reviews.")
        workspace = Path(self._value("workspace") or str(self._cwd)).expanduser()
        if not workspace.is_dir():
            raise ValueError(f"{workspace} is not a directory.")
        budget: float | None = None
        if self._value("budget"):
            try:
                budget = float(self._value("budget"))
            except ValueError:
                raise ValueError("The budget is a number of US dollars.") from None
            if budget < 0:
                raise ValueError("The budget cannot be negative.")
        agent = self.query_one("#agent", Select).value
        body: dict[str, Any] = {
            "goal": goal or "Review this change.",
            "workspace": str(workspace.resolve()),
            "agent": agent if isinstance(agent, str) else None,
            "model": self._value("model") or None,
            "budget": budget,
            "continue_run": self._continue_run,
        }
        if kind == "implement" and target:
            body["plan_run"] = target
        if kind == "critic":
            body["target_run"] = target
            body.pop("budget")  # a critic run takes no budget field
        return NewRun(kind=kind, body={k: v for k, v in body.items() if v is not None})
