"""The WebSocket that attaches to a daemon terminal: raw bytes both ways, JSON control frames.

Frames: binary frames carry terminal bytes (output from the daemon, keystrokes to it); text
frames carry small JSON control messages — ``{"type": "resize", "rows", "cols"}`` from the
client, ``{"type": "exit", "code", "signal"}`` and ``{"type": "lagged"}`` from the daemon.
A client that falls more than 4 MiB behind is sent ``lagged``, a reset and the scrollback, then
live output again. A *screen* client (``screen=True``: it draws the screen and keeps no
scrollback) is never lagged: output that piles up for it is skipped to the newest screenful. It
answers each output message with ``{"type": "drawn"}`` once drawn; while output streams the
daemon sends the next message only once all but the last two are drawn (or after half a
second without an answer).

:func:`open_attach` blocks (the CLI's `kyros term attach`); :func:`open_attach_async` is the
same connection for an asyncio loop (the console's terminal pane). Both refuse with the same
:mod:`kyros.errors`.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from kyros import __version__
from kyros.client.discovery import DaemonTarget
from kyros.client.peer import connect_unix
from kyros.errors import AuthError, DaemonUnreachable, KyrosError, NotFound

if TYPE_CHECKING:
    from websockets.asyncio.client import ClientConnection


def _path(ref: str, rows: int, cols: int, *, screen: bool = False) -> str:
    path = f"/v1/terminals/{ref}/attach?rows={rows}&cols={cols}"
    return f"{path}&view=screen" if screen else path


def _options() -> dict[str, Any]:
    return {"user_agent_header": f"kyros/{__version__}", "max_size": None, "open_timeout": 10}


def _tcp(target: DaemonTarget, path: str, options: dict[str, Any]) -> str:
    """The ``ws(s)://`` URI of ``path`` on a TCP daemon; adds its token to ``options``."""
    if target.token:
        options["additional_headers"] = {"authorization": f"Bearer {target.token}"}
    base = target.base_url.replace("http://", "ws://", 1).replace("https://", "wss://", 1)
    return f"{base}{path}"


def _refused(exc: Exception, target: DaemonTarget, ref: str) -> KyrosError:
    """The KyrosError a failed handshake means."""
    from websockets.exceptions import InvalidStatus

    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        if status in (401, 403):
            return AuthError(f"the daemon refused the terminal connection ({status})")
        if status == 404:
            return NotFound(f"no terminal {ref!r}; `kyros term ls` lists them")
        return KyrosError(f"the daemon refused the terminal connection ({status})")
    return DaemonUnreachable(
        f"cannot reach the kyros daemon at {target.describe()} ({type(exc).__name__}: {exc})"
    )


def open_attach(
    target: DaemonTarget, ref: str, *, rows: int, cols: int, screen: bool = False
) -> Any:
    """A connected ``websockets`` client for terminal ``ref`` (sized ``rows`` x ``cols``);
    ``screen`` as in :func:`open_attach_async`."""
    from websockets.exceptions import WebSocketException
    from websockets.sync.client import connect

    path = _path(ref, rows, cols, screen=screen)
    # The connection outlives this function (the caller closes it): connect directly rather
    # than as a context manager (`legacy=True` in websockets >= 16).
    options = {**_options(), "legacy": True}
    try:
        if target.uds:
            # permessage-deflate costs CPU at both ends for every frame and saves nothing on a
            # local socket (~10% of the daemon's and the client's time on a bulk stream).
            sock = connect_unix(target.uds, timeout=10)  # proves the server is ours
            return connect(f"ws://localhost{path}", sock=sock, compression=None, **options)
        return connect(_tcp(target, path, options), **options)
    except (OSError, WebSocketException) as exc:
        raise _refused(exc, target, ref) from None


async def open_attach_async(
    target: DaemonTarget, ref: str, *, rows: int, cols: int, screen: bool = False
) -> ClientConnection:
    """:func:`open_attach` for an asyncio loop: a connected ``websockets.asyncio`` client.

    ``screen``: this client only draws the screen; the daemon skips output that piles up for it
    to the newest screenful (it would rather skip a flood than show it late).
    The caller closes it (``await conn.close()``). Raises :class:`~kyros.errors.NotFound`,
    :class:`~kyros.errors.AuthError`, :class:`~kyros.errors.DaemonUnreachable` or
    :class:`~kyros.errors.KyrosError` as the blocking one does.
    """
    from websockets.asyncio.client import connect
    from websockets.exceptions import WebSocketException

    path = _path(ref, rows, cols, screen=screen)
    # A closing handshake waits at most a second (the console may be quitting). One message
    # queued here at most: output a slow reader has not taken waits in the daemon, which skips
    # it for a screen client, rather than in a queue the reader must get through.
    options = {**_options(), "close_timeout": 1.0, "max_queue": 1}
    try:
        if target.uds:
            # No permessage-deflate on the local socket, as in open_attach.
            sock = await asyncio.to_thread(connect_unix, target.uds, 10)  # proves it is ours
            sock.setblocking(False)
            return await connect(f"ws://localhost{path}", sock=sock, compression=None, **options)
        return await connect(_tcp(target, path, options), **options)
    except (OSError, TimeoutError, WebSocketException) as exc:
        raise _refused(exc, target, ref) from None
