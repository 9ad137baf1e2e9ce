"""Model tokens as events: coalesced so a fast stream costs one write per ~100 ms."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kyros.core.runs.service import RunService

#: Model tokens are written as one event per this many seconds or characters, whichever first.
DELTA_FLUSH_SECONDS = 0.1
DELTA_FLUSH_CHARS = 2048


class DeltaWriter:
    """Coalesces streamed tokens into ``model.delta`` events; ``extra`` tags each event."""

    def __init__(self, runs: RunService, run_id: str, **extra: object) -> None:
        self.runs, self.run_id, self.extra = runs, run_id, extra
        self.buffer: list[str] = []
        self.size = 0
        self.last = time.monotonic()

    async def __call__(self, delta: str) -> None:
        self.buffer.append(delta)
        self.size += len(delta)
        if self.size >= DELTA_FLUSH_CHARS or time.monotonic() - self.last >= DELTA_FLUSH_SECONDS:
            await self.flush()

    async def flush(self) -> None:
        if self.buffer:
            text, self.buffer, self.size = "".join(self.buffer), [], 0
            await self.runs.emit(self.run_id, "model.delta", {"text": text, **self.extra})
        self.last = time.monotonic()
