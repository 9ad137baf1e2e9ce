"""Provider keys as the daemon sees them: environment, OS keyring, kyros's credentials file.

Keyring lookups can block (a locked desktop keyring waits for a prompt), so the event loop never
makes one: :class:`LiveKeys` keeps a snapshot that threads refresh, before each run is created
and whenever it is older than a few seconds. A key stored with `kyros auth set-key` while the
daemon runs is therefore used by the next run, and it never enters the daemon's environment:
it travels per call (:class:`kyros.core.ai.backend.ChatRequest`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from kyros.credentials import Credentials
from kyros.settings import Loaded

#: A snapshot older than this is refreshed in the background when read.
MAX_AGE_SECONDS = 5.0


def credentials_for(loaded: Loaded) -> Credentials:
    """The daemon's :class:`Credentials`: environment keys as settings read them."""
    return Credentials(loaded.paths, {**loaded.keyring_env, **loaded.provider_keys})


class LiveKeys:
    """A callable returning ``{ENV_VAR: key}``, refreshed off the event loop."""

    def __init__(self, source: Callable[[], dict[str, str]], initial: dict[str, str]) -> None:
        self.source = source
        self._snapshot = dict(initial)
        self._taken = time.monotonic()
        self._refreshing: asyncio.Task[None] | None = None

    def __call__(self) -> dict[str, str]:
        if time.monotonic() - self._taken > MAX_AGE_SECONDS and self._refreshing is None:
            with contextlib.suppress(RuntimeError):  # no running loop: keep the snapshot
                self._refreshing = asyncio.get_running_loop().create_task(self._background())
        return self._snapshot

    async def refresh(self) -> None:
        """Read every source now (in a thread)."""
        self._snapshot = await asyncio.to_thread(self.source)
        self._taken = time.monotonic()

    async def _background(self) -> None:
        try:
            await self.refresh()
        except Exception:  # a broken keyring must not break runs; the snapshot stays
            self._taken = time.monotonic()
        finally:
            self._refreshing = None
