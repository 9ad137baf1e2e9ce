"""Which deployments are resting after failures, so that no request reaches them meanwhile."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

#: Consecutive failures after which a deployment rests even when it has no alternative.
FAILURES_BEFORE_COOLDOWN = 3


@dataclass
class _State:
    until: float = 0.0
    reason: str = ""
    failures: int = 0


class Cooldowns:
    """Per-deployment cooldowns of one daemon (keyed by :attr:`ResolvedModel.deployment`)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._states: dict[str, _State] = {}

    def remaining(self, deployment: str) -> float:
        """Seconds until ``deployment`` may be called again (0 when it may now)."""
        state = self._states.get(deployment)
        return max(0.0, state.until - self.clock()) if state else 0.0

    def cool(self, deployment: str, seconds: float, reason: str) -> None:
        """Leave ``deployment`` alone for ``seconds`` (an existing longer rest is kept)."""
        state = self._states.setdefault(deployment, _State())
        state.until = max(state.until, self.clock() + seconds)
        state.reason = reason

    def failed(self, deployment: str) -> int:
        """Count a failure; returns the consecutive failures so far."""
        state = self._states.setdefault(deployment, _State())
        state.failures += 1
        return state.failures

    def succeeded(self, deployment: str) -> None:
        state = self._states.get(deployment)
        if state is not None:
            state.failures = 0

    def snapshot(self) -> dict[str, dict[str, float | str]]:
        """Resting deployments with seconds left and why: for `kyros models`."""
        now = self.clock()
        return {
            key: {"seconds": round(state.until - now, 1), "reason": state.reason}
            for key, state in self._states.items()
            if state.until > now
        }
