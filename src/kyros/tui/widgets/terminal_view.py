"""A daemon terminal in a pane: its screen drawn row by row, keys and pastes sent as a terminal
sends them, the session resized with the pane.

I/O runs on Textual's own asyncio loop, never blocking it: an async worker holds the attach
WebSocket (:func:`kyros.client.attach.open_attach_async`) and queues what arrives; a drain task
feeds the queue to the emulator in slices of :data:`DRAIN_SLICE_S`, so a keystroke is handled
between two slices even while output floods in (see :mod:`kyros.tui.terminal_backlog`). The
pane attaches as a *screen* viewer: under a flood the daemon sends it the newest screenful once
a frame, not every byte. Each message is answered ``drawn`` once it is fed, and the daemon
sends the next only then: output waits in the daemon (which skips it) rather than in the socket
or in queues here that a keystroke's echo would wait behind. Only rows the emulator reports
changed (plus the cursor's) are drawn again, at Textual's next frame.

The emulator answers the queries a program waits for (the cursor position, the status, primary
device attributes; see :mod:`kyros.emulator.terminal`), and the answers are typed into the
terminal like keys, by the drain task once the slice that held the query is fed — in order with
keys typed before and after. Only live output is answered. The attach's first message is the
scrollback, and the message after a ``lagged`` notice is the scrollback again on a reset screen
(:mod:`kyros.daemon.routes.terminals`): queries in them were made long ago, answered already or
abandoned, and an answer now would be input the program never asked for, typed into whatever
it reads meanwhile (a shell prompt, an editor). Every later message is output the program
wrote since the attach, skipped to its newest screenful under a flood: a query in it is
answered; one in a stretch the daemon skipped is not.

Every key goes to the program except ``ctrl+q`` (quit the console) and the leave key
(:data:`LEAVE_KEY`; the app rebinds it to the ``detach_key`` setting through the keymap id
:data:`LEAVE_BINDING`), which hands the focus back to the console. ``ctrl+p`` reaches the
program too while the pane has focus.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich.style import Style
from textual import events, work
from textual.binding import Binding
from textual.geometry import Region
from textual.message import Message
from textual.strip import Strip
from textual.widget import Widget
from textual.worker import Worker, WorkerState

from kyros.client.attach import open_attach_async
from kyros.emulator import TerminalEmulator
from kyros.errors import KyrosError
from kyros.tui.terminal_backlog import Backlog
from kyros.tui.terminal_keys import LEAVE_BINDING, LEAVE_KEY, key_bytes, paste_bytes

if TYPE_CHECKING:
    from websockets.asyncio.client import ClientConnection

    from kyros.client.discovery import DaemonTarget

#: Output is fed this long at a time before the loop runs other work (keys, repaints).
DRAIN_SLICE_S = 0.002
#: What a screen viewer answers each output message with, once it is fed to the emulator.
DRAWN = json.dumps({"type": "drawn"})


def exit_note(code: int | None, signal: int | None) -> str:
    """``[exited 0]``, ``[exited: signal 9]``: what the pane shows when its program ends."""
    return f"[exited: signal {signal}]" if signal else f"[exited {code}]"


class TerminalView(Widget, can_focus=True):
    """One attached daemon terminal (``terminal_id`` on the daemon at ``target``)."""

    BINDINGS = [Binding(LEAVE_KEY, "leave", "Leave terminal", id=LEAVE_BINDING)]
    #: Keys the app would take (ctrl+p) go to the program instead (see KyrosApp.check_action).
    takes_every_key = True

    DEFAULT_CSS = """
    TerminalView {
        width: 1fr;
        height: 1fr;
    }
    """

    @dataclass
    class Attached(Message):
        """The WebSocket is open: output flows, keys are sent."""

        view: TerminalView

    @dataclass
    class Exited(Message):
        """The terminal's program ended (the pane keeps its last screen)."""

        view: TerminalView
        code: int | None
        signal: int | None

    @dataclass
    class Failed(Message):
        """The attach was refused or the link dropped: ``message`` says why."""

        view: TerminalView
        message: str

    @dataclass
    class LeaveRequested(Message):
        """:data:`LEAVE_KEY` was pressed: the focus should go back to the console."""

        view: TerminalView

    def __init__(
        self,
        target: DaemonTarget,
        terminal_id: str,
        *,
        label: str | None = None,
        leave_key: str = LEAVE_KEY,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        self.target = target
        #: The key the leave binding is on (the app's keymap may have moved it).
        self.leave_key = leave_key
        self.terminal_id = terminal_id
        #: What the tab says: the terminal's name, else its id.
        self.label = label or terminal_id
        # No scrollback: the pane shows the screen (`kyros term logs` has the history), and
        # 10,000 kept rows would be ~1.4 M references for every full garbage collection to walk.
        self.emulator = TerminalEmulator(cols=80, rows=24, scrollback=0, on_reply=self._reply)
        self.backlog = Backlog(self.emulator.feed)
        #: ``{"code", "signal"}`` once the program ended.
        self.exited: dict[str, Any] | None = None
        self._conn: ClientConnection | None = None
        self._attaching = False
        self._detached = False
        self._queued: list[bytes | str] = []  # typed before the WebSocket opened
        self._strips: dict[int, Strip] = {}
        self._base: Style | None = None
        self._cursor: tuple[int, int] | None = None  # where the cursor was last drawn
        self._drain: asyncio.Task[None] | None = None
        self._fed = asyncio.Event()  # set while nothing waits to be fed
        self._fed.set()
        # Whether the message being fed is live output, whose queries are answered. One message
        # is fed at a time: the next is read only once the backlog is drained (``_fed``).
        self._live = False
        self._replay_next = True  # the attach's first message is the scrollback
        self._replies: list[bytes] = []  # answers to send once the current slice is fed

    # --- state ------------------------------------------------------------------------------

    @property
    def attached(self) -> bool:
        return self._conn is not None

    def screen_text(self) -> list[str]:
        """The visible screen as plain text, one right-stripped string per row."""
        return self.emulator.display_lines()

    # --- attach -----------------------------------------------------------------------------

    def on_resize(self, event: events.Resize) -> None:
        cols, rows = max(2, self.size.width), max(2, self.size.height)
        if (rows, cols) != (self.emulator.rows, self.emulator.cols):
            self.emulator.resize(rows, cols)
            self._strips.clear()
            self._send_control({"type": "resize", "rows": rows, "cols": cols})
        if not (self._attaching or self._conn or self.exited or self._detached):
            self._attaching = True
            self._connect(rows, cols)

    @work(exclusive=True, group="attach", name="attach terminal", exit_on_error=False)
    async def _connect(self, rows: int, cols: int) -> None:
        try:
            conn = await open_attach_async(
                self.target, self.terminal_id, rows=rows, cols=cols, screen=True
            )
        except KyrosError as exc:
            self._attaching = False
            self._note(f"[not attached: {exc.message}]")
            self.post_message(self.Failed(self, exc.message))
            return
        from websockets.exceptions import ConnectionClosed

        self._conn, self._attaching = conn, False
        self._replay_next = True  # each attach starts with the scrollback
        try:
            if (self.emulator.rows, self.emulator.cols) != (rows, cols):  # resized meanwhile
                await conn.send(
                    json.dumps(
                        {"type": "resize", "rows": self.emulator.rows, "cols": self.emulator.cols}
                    )
                )
            queued, self._queued = self._queued, []
            for data in queued:
                await conn.send(data)
            self.post_message(self.Attached(self))
            async for message in conn:
                if isinstance(message, bytes):
                    self._live, self._replay_next = not self._replay_next, False
                    self._received(message)
                    await self._fed.wait()
                    # The daemon may send the next one. It may also have said ``exit`` and
                    # closed meanwhile: that message is still to be read, below.
                    with contextlib.suppress(ConnectionClosed):
                        await conn.send(DRAWN)
                else:
                    self._control(message)
        except ConnectionClosed:
            pass
        finally:
            self._conn = None
            with contextlib.suppress(Exception):
                await conn.close()
        if self.exited is None and not self._detached:
            self._note("[detached: the daemon closed the connection]")
            self.post_message(self.Failed(self, "the daemon closed the terminal connection"))

    async def detach(self) -> None:
        """Close the WebSocket (the session runs on in the daemon) and stop drawing."""
        self._detached = True
        conn = self._conn
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()
        self.workers.cancel_group(self, "attach")

    def on_unmount(self) -> None:
        self._detached = True
        if self._drain is not None:
            self._drain.cancel()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state is WorkerState.ERROR and event.worker.group == "attach":
            self._attaching = False
            error = event.worker.error
            self.post_message(self.Failed(self, f"{type(error).__name__}: {error}"))

    # --- output -----------------------------------------------------------------------------

    def _received(self, data: bytes) -> None:
        self.backlog.add(data)
        self._fed.clear()
        if self._drain is None or self._drain.done():
            self._drain = asyncio.get_running_loop().create_task(self._drain_backlog())

    async def _drain_backlog(self) -> None:
        try:
            while self.backlog.drain(DRAIN_SLICE_S):
                self._mark_changed()
                await self._send_replies()
                await asyncio.sleep(0)  # let keys, the reader and repaints in between slices
            self._mark_changed()
            await self._send_replies()
        finally:
            self._fed.set()

    def _reply(self, data: bytes) -> None:
        """The emulator answered a query: sent after this slice if the output is live."""
        if self._live:
            self._replies.append(data)

    async def _send_replies(self) -> None:
        if self._replies:
            data, self._replies = b"".join(self._replies), []
            await self._send(data)

    def _control(self, text: str) -> None:
        try:
            control = json.loads(text)
        except ValueError:
            return
        kind = control.get("type") if isinstance(control, dict) else None
        if kind == "lagged":  # the scrollback comes next, replayed on a reset screen
            self._replay_next = True
        elif kind == "exit":
            self.exited = {"code": control.get("code"), "signal": control.get("signal")}
            self._note(exit_note(self.exited["code"], self.exited["signal"]))
            self.post_message(self.Exited(self, self.exited["code"], self.exited["signal"]))

    def _note(self, text: str) -> None:
        """Show ``text`` reversed on a line of its own after the output."""
        self._received(f"\r\n\x1b[0;7m{text}\x1b[0m".encode())

    # --- drawing ----------------------------------------------------------------------------

    def _mark_changed(self) -> None:
        """The emulator moved on: mark the rows it changed (and the cursor's) for a repaint.

        Textual draws what is marked at its next frame, however often this is called: a second
        gate here would only add up to a frame of delay to every echo."""
        rows = self.emulator.take_dirty()
        cursor = self.emulator.cursor if self.emulator.cursor_visible else None
        if cursor != self._cursor:
            rows.update(c[0] for c in (cursor, self._cursor) if c is not None)
            self._cursor = cursor
        if not rows:
            return
        for y in rows:
            self._strips.pop(y, None)
        width = self.size.width
        if len(rows) > self.emulator.rows // 2:
            self.refresh()
        else:
            self.refresh(*(Region(0, y, width, 1) for y in rows))

    def _repaint_cursor(self) -> None:
        if self._cursor is not None:
            self._strips.pop(self._cursor[0], None)
            self.refresh(Region(0, self._cursor[0], self.size.width, 1))

    def on_focus(self) -> None:
        self._repaint_cursor()

    def on_blur(self) -> None:
        self._repaint_cursor()

    def notify_style_update(self) -> None:
        self._base = None  # the theme or the CSS changed: every row is drawn on the new colours
        self._strips.clear()
        super().notify_style_update()

    def render_line(self, y: int) -> Strip:
        base = self._base
        if base is None:  # computed once, not per row: it walks the ancestors' styles (~0.15 ms)
            base = self._base = self.rich_style
        strip = self._strips.get(y)
        if strip is None:
            width = self.size.width
            emulator = self.emulator
            if y < emulator.rows:
                segments = emulator.row_segments(y, show_cursor=self.has_focus)
                strip = Strip(segments, emulator.cols).apply_style(base)
                if strip.cell_length != width:
                    strip = strip.crop_extend(0, width, base)
            else:
                strip = Strip.blank(width, base)
            self._strips[y] = strip
        return strip

    # --- input ------------------------------------------------------------------------------

    async def _on_key(self, event: events.Key) -> None:
        if event.key == self.leave_key:
            return  # the binding takes it
        event.stop()
        event.prevent_default()
        data = key_bytes(
            event.key, event.character, app_cursor=self.emulator.application_cursor_keys
        )
        if data:
            await self.send(data)

    async def _on_paste(self, event: events.Paste) -> None:
        event.stop()
        event.prevent_default()
        if event.text:
            await self.send(paste_bytes(event.text, bracketed=self.emulator.bracketed_paste))

    async def send(self, data: bytes) -> None:
        """Type ``data`` into the terminal (queued until the WebSocket is open)."""
        await self._send(data)

    async def _send(self, data: bytes | str) -> None:
        from websockets.exceptions import ConnectionClosed

        conn = self._conn
        if conn is None:
            if self.exited is None and not self._detached:
                self._queued.append(data)
            return
        with contextlib.suppress(ConnectionClosed):
            await conn.send(data)

    def _send_control(self, control: dict[str, Any]) -> None:
        if self._conn is not None:
            self.run_worker(self._send(json.dumps(control)), group="control", exit_on_error=False)

    def action_leave(self) -> None:
        self.post_message(self.LeaveRequested(self))
