"""Server-Sent Events of one run, resumable with no gap and no duplicate (RELIABILITY D7).

The reader subscribes to the bus *before* it reads the store, so an event committed in between is
seen at least once; then it only ever sends ``seq == last_sent + 1``. Anything out of order or a
bus overflow sends it back to the store, which holds every event in order.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from kyros.core.app import Core
from kyros.statuses import FINAL_EVENT_TYPES, TERMINAL_STATUSES

KEEPALIVE_SECONDS = 15.0
WAKE_SECONDS = 1.0
PAGE = 500
#: Sent (without an id) when a stream ends because the run has nothing more to say; a stream
#: that ends without it (the daemon stopping) is to be resumed.
END_FINISHED = b'event: stream.end\ndata: {"reason":"finished"}\n\n'


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def format_event(event: dict[str, Any]) -> bytes:
    data = json.dumps(event, default=_default, separators=(",", ":"))
    return f"id: {event['seq']}\nevent: {event['type']}\ndata: {data}\n\n".encode()


async def event_stream(
    core: Core, run_id: str, after: int, *, follow: bool, app_state: Any
) -> AsyncIterator[bytes]:
    sent = after
    with core.bus.subscribe(run_id) as sub:
        idle = 0.0
        while True:
            page = await core.runs.events_after(run_id, sent, PAGE)
            for event in page:
                yield format_event(event)
                sent = event["seq"]
                if event["type"] in FINAL_EVENT_TYPES:
                    return
            if len(page) == PAGE:
                continue
            if not follow:
                return
            if not page:
                run = await core.runs.get(run_id)
                if run["status"] in TERMINAL_STATUSES and run["last_seq"] <= sent:
                    yield END_FINISHED
                    return
            sub.overflowed = False
            # Wait for live events; send them straight from the bus while they are in order.
            while True:
                if getattr(app_state, "shutting_down", False):
                    return
                live = await sub.get(WAKE_SECONDS)
                if live is None:
                    idle += WAKE_SECONDS
                    if idle >= KEEPALIVE_SECONDS:
                        idle = 0.0
                        yield b": keep-alive\n\n"
                    # Another process may have written events (a worker-only daemon): re-read.
                    break
                idle = 0.0
                if sub.overflowed or live["seq"] > sent + 1:
                    break  # a gap: the store has the missing events
                if live["seq"] <= sent:
                    continue  # already sent from the store
                yield format_event(live)
                sent = live["seq"]
                if live["type"] in FINAL_EVENT_TYPES:
                    return
