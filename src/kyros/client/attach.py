"""The WebSocket that attaches to a daemon terminal: raw bytes both ways, JSON control frames.

Frames: binary frames carry terminal bytes (output from the daemon, keystrokes to it); text
frames carry small JSON control messages — ``{"type": "resize", "rows", "cols"}`` from the
client, ``{"type": "exit", "code", "signal"}`` and ``{"type": "lagged"}`` from the daemon.
"""

from __future__ import annotations

from typing import Any

from kyros import __version__
from kyros.client.discovery import DaemonTarget
from kyros.errors import AuthError, DaemonUnreachable, KyrosError, NotFound


def open_attach(target: DaemonTarget, ref: str, *, rows: int, cols: int) -> Any:
    """A connected ``websockets`` client for terminal ``ref`` (sized ``rows`` x ``cols``)."""
    from websockets.exceptions import InvalidStatus, WebSocketException
    from websockets.sync.client import connect, unix_connect

    path = f"/v1/terminals/{ref}/attach?rows={rows}&cols={cols}"
    # The connection outlives this function (the caller closes it): connect directly rather
    # than as a context manager (`legacy=True` in websockets >= 16).
    options: dict[str, Any] = {
        "user_agent_header": f"kyros/{__version__}",
        "max_size": None,
        "open_timeout": 10,
        "legacy": True,
    }
    try:
        if target.uds:
            # permessage-deflate costs CPU at both ends for every frame and saves nothing on a
            # local socket (~10% of the daemon's and the client's time on a bulk stream).
            return unix_connect(target.uds, f"ws://localhost{path}", compression=None, **options)
        if target.token:
            options["additional_headers"] = {"authorization": f"Bearer {target.token}"}
        base = target.base_url.replace("http://", "ws://", 1).replace("https://", "wss://", 1)
        return connect(f"{base}{path}", **options)
    except InvalidStatus as exc:
        status = exc.response.status_code
        if status in (401, 403):
            raise AuthError(f"the daemon refused the terminal connection ({status})") from None
        if status == 404:
            raise NotFound(f"no terminal {ref!r}; `kyros term ls` lists them") from None
        raise KyrosError(f"the daemon refused the terminal connection ({status})") from None
    except (OSError, WebSocketException) as exc:
        raise DaemonUnreachable(
            f"cannot reach the kyros daemon at {target.describe()} ({type(exc).__name__}: {exc})"
        ) from None
