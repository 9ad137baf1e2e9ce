"""Terminals: create, list, read, kill, type into, read back as text, and attach (WebSocket).

The WebSocket is authenticated at the handshake by the Guard (token over TCP, the socket's
permissions locally; a foreign Origin is refused) before this code — or the pty — sees a byte.
Frames: binary both ways for terminal bytes; text frames for JSON control messages.

A viewer that falls behind is sent ``lagged``, a reset and the scrollback, then live output
again. ``view=screen`` on the attach is for a client that only draws the screen (the console's
terminal pane): it would rather skip a flood than show it late. Its scrollback and its live
output are skipped to the newest screenful whenever they pile up. While output streams it is
sent a message only once it has drawn all but the last :data:`SCREEN_AHEAD` (it answers each
with ``{"type": "drawn"}``), and at most one per :data:`SCREEN_FRAME_S`: a flood costs it a
screenful per frame it can draw, and a keystroke's echo never waits behind output queued in the
socket.

So the first binary message of an attach, and the one after each ``lagged``, is old output
replayed; every other one is output written since. A client that answers the program's queries
(the console's terminal pane) answers them only in the latter: a query replayed from the
scrollback was made before it came.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from typing import Annotated

from fastapi import APIRouter, Depends, Path, WebSocket, WebSocketDisconnect
from fastapi.responses import PlainTextResponse

from kyros.core.app import Core
from kyros.core.terminals import Viewer, ViewerLagged
from kyros.core.terminals.ring import LINGER_MIN
from kyros.core.terminals.session import TerminalSession
from kyros.daemon.routes.deps import core
from kyros.emulator import TerminalEmulator
from kyros.errors import KyrosError
from kyros.protocol import Terminal, TerminalCreate, TerminalInput, TerminalList

router = APIRouter(prefix="/v1/terminals", tags=["terminals"])

Ref = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
#: WebSocket close code for "no such terminal" (4000-4999 are the application's).
CLOSE_NOT_FOUND = 4404
#: While a program streams output, how long the first pty read waits for more before it is
#: sent: one frame then carries many reads. Echoes and prompts are sent at once.
FRAME_LINGER_S = 0.002
#: A screen viewer is sent streaming output at most this often (a display's frame): what
#: comes meanwhile is skipped to the newest screenful.
SCREEN_FRAME_S = 1 / 120
#: How long a screen viewer's ``drawn`` is waited for before the next message goes anyway: a
#: client that never answers still sees its terminal, a couple of frames a second.
SCREEN_DRAWN_WAIT_S = 0.5
#: Messages a screen viewer may have in hand, not yet drawn, when the next one is sent: they
#: travel while it draws. Each one more adds a message's drawing time to how far behind a slow
#: viewer may fall; each one less makes a frame wait for the round trip. A line flood's echo
#: p99 with 0, 1, 2: ~45, 36-44, 28-32 ms; a flood of cells (64 KiB messages): ~120, 126-151,
#: 157-177 ms, against ~380 ms with no answer waited for (benchmarks/tui_terminal.py).
SCREEN_AHEAD = 2


class Drawn:
    """How many output messages were sent to a client, and how many it said it drew."""

    def __init__(self) -> None:
        self.sent = 0
        self.drawn = 0
        self._room = asyncio.Event()

    @property
    def _has_room(self) -> bool:
        """At most :data:`SCREEN_AHEAD` messages sent are not drawn yet."""
        return self.drawn >= self.sent - SCREEN_AHEAD

    def one_more(self) -> None:
        """The client drew one more message (``{"type": "drawn"}``)."""
        self.drawn += 1
        if self._has_room:
            self._room.set()

    async def caught_up(self, timeout: float) -> None:
        """Until the client has caught up (see :attr:`_has_room`), ``timeout`` seconds at
        most."""
        if self._has_room:
            return
        self._room.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._room.wait(), timeout)


def describe(s: TerminalSession) -> Terminal:
    return Terminal(
        id=s.id,
        name=s.name,
        command=s.command,
        cwd=str(s.cwd),
        pid=s.pid,
        rows=s.rows,
        cols=s.cols,
        status="running" if s.running else "exited",
        exit_code=s.exit_code,
        signal=s.signal,
        run_id=s.run_id,
        viewers=s.viewers,
        created_at=s.created_at,
    )


@router.get("", response_model=TerminalList)
async def list_terminals(c: Annotated[Core, Depends(core)]) -> TerminalList:
    """Terminals of this daemon, running and recently exited, oldest first."""
    return TerminalList(terminals=[describe(s) for s in c.terminals.list()])


@router.post("", response_model=Terminal, status_code=201)
async def create_terminal(body: TerminalCreate, c: Annotated[Core, Depends(core)]) -> Terminal:
    """Start a command (the user's shell by default) on a new pty owned by the daemon."""
    session = c.terminals.create(
        body.command,
        cwd=body.cwd or os.path.expanduser("~"),
        name=body.name,
        rows=body.rows,
        cols=body.cols,
    )
    return describe(session)


@router.get("/{ref}", response_model=Terminal)
async def get_terminal(ref: Ref, c: Annotated[Core, Depends(core)]) -> Terminal:
    """One terminal, by id or name."""
    return describe(c.terminals.get(ref))


@router.delete("/{ref}", response_model=Terminal)
async def kill_terminal(ref: Ref, c: Annotated[Core, Depends(core)]) -> Terminal:
    """End a terminal's program (SIGTERM, then SIGKILL after a grace period)."""
    return describe(await c.terminals.kill(ref))


@router.post("/{ref}/input", response_model=Terminal)
async def type_into(ref: Ref, body: TerminalInput, c: Annotated[Core, Depends(core)]) -> Terminal:
    """Type text into a terminal without attaching."""
    session = c.terminals.get(ref)
    session.write(body.data.encode("utf-8"))
    return describe(session)


@router.get("/{ref}/logs", response_class=PlainTextResponse)
async def terminal_logs(ref: Ref, c: Annotated[Core, Depends(core)]) -> PlainTextResponse:
    """The scrollback as plain text, rendered by the terminal emulator: full-screen programs
    leave the screen they drew over; no escape sequence comes back."""
    session = c.terminals.get(ref)
    emulator = TerminalEmulator(cols=session.cols, rows=session.rows)
    emulator.feed(session.scrollback())
    return PlainTextResponse(emulator.text())


@router.websocket("/{ref}/attach")
async def attach(websocket: WebSocket, ref: str) -> None:
    """Attach: the scrollback first, then live output; keystrokes and resizes back."""
    c: Core = websocket.app.state.core
    try:
        session = c.terminals.get(ref)
    except KyrosError:
        await websocket.close(code=CLOSE_NOT_FOUND)
        return
    await websocket.accept()
    _resize_from_query(websocket, session)
    viewer = session.attach(screen=websocket.query_params.get("view") == "screen")
    drawn = Drawn()
    try:
        drawn.sent += 1
        await websocket.send_bytes(viewer.snapshot)
        outgoing = asyncio.create_task(_pump_out(websocket, session, viewer, drawn))
        incoming = asyncio.create_task(_pump_in(websocket, session, drawn))
        _, pending = await asyncio.wait({outgoing, incoming}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    except (WebSocketDisconnect, RuntimeError):
        pass  # the client went away: the session runs on
    finally:
        viewer.detach()


def _resize_from_query(websocket: WebSocket, session: TerminalSession) -> None:
    try:
        rows = int(websocket.query_params.get("rows", "0"))
        cols = int(websocket.query_params.get("cols", "0"))
    except ValueError:
        return
    if rows and cols and session.running:
        with contextlib.suppress(KyrosError):
            session.resize(rows, cols)


async def _pump_out(
    websocket: WebSocket, session: TerminalSession, viewer: Viewer, drawn: Drawn
) -> None:
    screen = viewer.screen
    streaming = len(viewer.snapshot) >= LINGER_MIN
    while True:
        if screen and streaming:
            # The next message waits a frame, and for the client to have drawn all but the
            # last few sent. Output meanwhile is skipped to the newest screenful, not queued in
            # the socket.
            await asyncio.sleep(SCREEN_FRAME_S)
            await drawn.caught_up(SCREEN_DRAWN_WAIT_S)
        skipped = viewer.dropped
        try:
            data = await viewer.read(linger=0.0 if screen else FRAME_LINGER_S)
            # A flood's newest screenful can be small (``yes``): what was skipped tells.
            streaming = len(data) >= LINGER_MIN or viewer.dropped > skipped
        except ViewerLagged:
            # Too slow a client: tell it, reset its screen, replay the scrollback, go on.
            await websocket.send_text(json.dumps({"type": "lagged", "dropped": viewer.dropped}))
            data = b"\x1bc" + viewer.resync()
        if not data:
            break
        drawn.sent += 1
        await websocket.send_bytes(data)
    if session.exited.is_set():
        await websocket.send_text(
            json.dumps({"type": "exit", "code": session.exit_code, "signal": session.signal})
        )
    await websocket.close()


async def _pump_in(websocket: WebSocket, session: TerminalSession, drawn: Drawn) -> None:
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("bytes"):
            with contextlib.suppress(KyrosError):  # typed after exit: nothing to type into
                session.write(message["bytes"])
        elif message.get("text"):
            try:
                control = json.loads(message["text"])
            except ValueError:
                continue
            kind = control.get("type") if isinstance(control, dict) else None
            if kind == "drawn":
                drawn.one_more()
            elif kind == "resize":
                with contextlib.suppress(KyrosError, TypeError, ValueError):
                    session.resize(int(control["rows"]), int(control["cols"]))
