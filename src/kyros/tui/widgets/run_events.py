"""A run's event log as it arrives: one line per notable event, the model's tokens live below.

``model.delta`` text streams into the live view; when the answer ends (any other event), its
tail is written to the log once and the live view empties, so a long answer costs one repaint
per poll, not one log line per chunk. The live view shows the newest rows of the answer, wrapped
here, so it knows its height: a chunk that keeps it repaints the view alone, where a layout of
the whole screen per chunk cost ~10 ms.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import RichLog, Static

from kyros.client.event_words import event_line
from kyros.sanitize import clean_text

#: The model text kept for the live view and written to the log when the answer ends.
LIVE_CHARS = 4000
#: Lines of a finished answer kept in the log.
ANSWER_LINES = 12
#: The live view's tallest height (rows) and the lines of the answer's tail it is given.
LIVE_HEIGHT = 8
LIVE_LINES = 6


class RunEvents(Vertical):
    """The log (a RichLog) and the live model output (a Static) of one run."""

    DEFAULT_CSS = f"""
    RunEvents {{ height: 1fr; }}
    RunEvents > RichLog {{ height: 1fr; }}
    RunEvents > #live {{ height: auto; max-height: {LIVE_HEIGHT}; display: none; }}
    RunEvents > #live.-streaming {{ display: block; }}
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._live = ""
        #: The live view's height in rows as last shown (0: hidden or not yet measured).
        self._live_rows = 0
        #: Sequence numbers shown, in order (a gap or a repeat would be a bug).
        self.seqs: list[int] = []
        #: Every line written to the log, for tests and copy.
        self.lines: list[str] = []
        #: The model's answers, each as streamed (``model.delta`` text joined).
        self.answers: list[str] = []

    def compose(self) -> ComposeResult:
        yield RichLog(wrap=True, markup=False, highlight=False, max_lines=5000, id="log")
        yield Static("", id="live")

    def reset(self) -> None:
        self._live = ""
        self.seqs.clear()
        self.lines.clear()
        self.answers.clear()
        self.query_one(RichLog).clear()
        self._show_live()

    def add(self, events: list[dict[str, Any]]) -> None:
        log = self.query_one(RichLog)
        for event in events:
            self.seqs.append(int(event["seq"]))
            if event["type"] == "model.delta":
                text = clean_text(str((event.get("data") or {}).get("text", "")))
                self._live = (self._live + text)[-LIVE_CHARS:]
                continue
            if self._live:
                self._fold(log)
            line = event_line(event, everything=True)
            if line is not None:
                stamp = str(event.get("created_at", ""))[11:19]
                self.lines.append(line)
                log.write(Text.assemble((f"{event['seq']:>4} {stamp} ", "dim"), line))
        self._show_live()

    def _fold(self, log: RichLog) -> None:
        self.answers.append(self._live)
        lines = self._live.strip().splitlines()
        shown = lines[-ANSWER_LINES:]
        if len(lines) > len(shown):
            shown.insert(0, f"… {len(lines) - len(shown)} more lines")
        for text in shown:
            log.write(Text("     │ " + text, style="dim"))
        self._live = ""

    def _show_live(self) -> None:
        live = self.query_one("#live", Static)
        live.set_class(bool(self._live), "-streaming")
        if not self._live:
            self._live_rows = 0
            return
        text = Text("\n".join(self._live.splitlines()[-LIVE_LINES:]), style="italic")
        width = live.content_size.width
        rows = 0
        if width:  # measured: the newest rows that fit, so the newest tokens are in sight
            lines = text.wrap(self.app.console, width)[-LIVE_HEIGHT:]
            text, rows = Text("\n").join(lines), len(lines)
        live.update(text, layout=not rows or rows != self._live_rows)
        self._live_rows = rows
