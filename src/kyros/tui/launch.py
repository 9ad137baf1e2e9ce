"""`kyros tui`'s start: the link to the daemon opens while the console's code loads.

Loading Textual and the screens takes ~0.3 s of CPU; connecting, and reading the first runs,
is mostly waiting on the daemon (another process). Done in this order, in two threads, the
console's first frame can already show the runs. Nothing here imports Textual before the
connection is under way.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future

from kyros.settings import Loaded
from kyros.tui.connection import Connection, open_connection

#: Frames a second Textual draws at most (its ``TEXTUAL_FPS``, 60 unless the user set it). A
#: change is drawn at Textual's next frame, so the frame period bounds how long a keystroke's
#: echo in a terminal pane waits to be drawn: at 60, a third of the 50 ms it is allowed under a
#: flood of output (benchmarks/tui_terminal.py). Only what changed is drawn; an idle console
#: draws nothing, whatever the rate.
FRAMES_PER_SECOND = 120


def run(loaded: Loaded, daemon: str | None = None, token: str | None = None) -> int:
    """Connect (starting a local daemon if none answers) while the console loads, then run it.

    A failure to connect raises :class:`~kyros.errors.KyrosError` before any screen exists,
    so it is a plain message. Returns the exit code."""
    opening: Future[Connection] = Future()

    def connect() -> None:
        try:
            opening.set_result(open_connection(loaded, daemon, token))
        except BaseException as exc:  # raised below, in the command's thread
            opening.set_exception(exc)

    # Read once, when Textual loads (below). The daemon inherits it and ignores it; terminals and
    # tools get an allow-listed environment, so it reaches no program of the user's.
    os.environ.setdefault("TEXTUAL_FPS", str(FRAMES_PER_SECOND))
    # A daemon thread: ctrl+c while a local daemon starts must not wait for its readiness.
    threading.Thread(target=connect, name="connect", daemon=True).start()
    from kyros.tui.app import run_connected  # Textual: ~0.2 s, loaded meanwhile

    return run_connected(opening.result(), loaded)
