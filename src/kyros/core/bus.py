"""In-process fan-out of freshly committed events to live subscribers (SSE streams, the TUI).

The store is the source of truth; the bus only wakes readers early. A subscriber that falls
behind is dropped back to reading the store (its queue is bounded), so a slow client can never
make the daemon hold unbounded memory.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

QUEUE_BOUND = 1000


class Subscription:
    """Events of one run as they are published. ``overflowed`` means: re-read from the store."""

    def __init__(self, bus: EventBus, run_id: str) -> None:
        self._bus = bus
        self.run_id = run_id
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_BOUND)
        self.overflowed = False

    def _offer(self, event: dict[str, Any]) -> None:
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.overflowed = True

    async def get(self, timeout: float) -> dict[str, Any] | None:
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            return None

    def close(self) -> None:
        self._bus._unsubscribe(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class EventBus:
    """Publish/subscribe of run events inside one daemon process."""

    def __init__(self) -> None:
        self._subs: dict[str, set[Subscription]] = defaultdict(set)

    def subscribe(self, run_id: str) -> Subscription:
        sub = Subscription(self, run_id)
        self._subs[run_id].add(sub)
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.run_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.run_id]

    def publish(self, events: Iterable[dict[str, Any]]) -> None:
        for event in events:
            for sub in tuple(self._subs.get(event["run_id"], ())):
                sub._offer(event)
