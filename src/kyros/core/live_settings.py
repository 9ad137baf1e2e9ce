"""The daemon's settings while it runs: ``config.toml`` re-read when it changes (ADR 0017).

A daemon lives for days; the user edits their config file in the meantime and expects the next
run to use it. Before each run is created (and whenever the settings are shown) the file's stamp
(inode, size, mtime) is compared with the one read last — one ``stat`` — and a changed file is
read and checked again. What runs read as they are created and call models (:data:`LIVE_KEYS`'s
complement: models, roles, budgets, deadlines, retries …) applies at once. What the daemon built
at start from its settings — the store, the queue's timings, terminals, plugins, logging
(:data:`RESTART_KEYS`) — keeps its value and is reported as waiting for a restart.

A file that no longer parses or checks leaves the settings as they were; runs are refused with
the file's problem until it is fixed, so a run never silently uses what the user just changed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from kyros.core.store.schema import utcnow
from kyros.errors import UsageError
from kyros.settings import SECRET_KEYS, Loaded, config_stamp, redact, reread
from kyros.settings.model import Settings

log = logging.getLogger("kyros.core")

#: Settings read once when the daemon starts: a change takes effect after a restart.
RESTART_KEYS = frozenset(
    {
        "database_url",
        "redis_url",
        "workers",
        "lease_seconds",
        "heartbeat_seconds",
        "reaper_seconds",
        "poll_seconds",
        "max_stalls",
        "retry_base_seconds",
        "retry_max_seconds",
        "terminal_scrollback",
        "terminal_env",
        "log_level",
        "plugins",
    }
)


class LiveSettings:
    """The settings in effect, re-read from the config file when it changed.

    ``apply`` receives the new effective :class:`Settings` after each successful re-read.
    """

    def __init__(self, loaded: Loaded, apply: Callable[[Settings], None]) -> None:
        self.started = loaded
        self.current = loaded
        self.apply = apply
        self.stamp = config_stamp(loaded.paths.config_file)
        self.read_at: datetime = utcnow()
        #: Why the file last read could not be used (None: it was fine).
        self.error: str | None = None
        self.effective: Settings = loaded.settings

    @property
    def restart_needed(self) -> list[str]:
        """Settings changed in the file that wait for `kyros daemon restart`."""
        old, new = self.started.settings, self.current.settings
        return sorted(k for k in RESTART_KEYS if getattr(old, k) != getattr(new, k))

    def check(self) -> None:
        """Re-read the config file if it changed since the last read (cheap when it did not)."""
        stamp = config_stamp(self.started.paths.config_file)
        if stamp == self.stamp:
            return
        self.stamp = stamp
        try:
            fresh = reread(self.started)
        except UsageError as exc:
            self.error = (
                f"{exc.message} — the daemon goes on with the settings it read at "
                f"{self.read_at:%H:%M:%S} UTC until the file is fixed"
            )
            log.warning("config file changed but cannot be used: %s", exc.message)
            return
        self.current, self.error, self.read_at = fresh, None, utcnow()
        new = fresh.settings
        live = {k: getattr(new, k) for k in type(new).model_fields if k not in RESTART_KEYS}
        self.effective = self.started.settings.model_copy(update=live)
        self.apply(self.effective)
        log.info(
            "re-read %s%s",
            self.started.paths.config_file,
            f"; waiting for a restart: {', '.join(self.restart_needed)}"
            if self.restart_needed
            else "",
        )

    def require_usable(self) -> None:
        """Raise ``UsageError`` if the config file changed into something unusable."""
        self.check()
        if self.error is not None:
            raise UsageError(f"your config file changed and cannot be used: {self.error}")

    def source_of(self, key: str) -> str:
        """Where the value in effect came from."""
        loaded = self.started if key in RESTART_KEYS else self.current
        return loaded.source_of(key)

    def entries(self) -> list[dict[str, Any]]:
        """Every setting in effect with its source, secrets redacted; a changed setting that
        waits for a restart carries the file's value as ``pending``."""
        self.check()
        pending = set(self.restart_needed)
        out = []
        for key in type(self.effective).model_fields:
            entry: dict[str, Any] = {
                "key": key,
                "value": redact(key, getattr(self.effective, key)),
                "source": self.source_of(key),
                "secret": key in SECRET_KEYS,
            }
            if key in pending:
                entry["pending"] = redact(key, getattr(self.current.settings, key))
                entry["pending_source"] = self.current.source_of(key)
            out.append(entry)
        return out
