"""Routing one model call over a chain of deployments: budgets, deadlines, retries, fallbacks.

This is the only layer that retries (litellm and the provider SDKs are told not to). For each
attempt the router picks the first deployment of the chain that is not cooling down, reserves the
call's worst-case cost with the :class:`Spender` (which refuses past a cap), and calls the backend
with kyros's phased deadlines. A failure is classified, written to the ledger, and then:

* a rate limit whose ``Retry-After`` is longer than ``retry_after_max`` never sleeps: the
  deployment rests that long and the call falls back, or fails at once;
* a retryable failure (rate limit, provider error, cut stream) is retried on the same deployment
  after ``Retry-After`` or a backoff, ``retries`` times — a timeout only when no other
  deployment could answer;
* then a retryable failure, an auth error or an overflowing context moves on to the next
  deployment that is not resting, and the failed one rests for ``cooldown`` seconds.

The call as a whole, retries and fallbacks together, ends within ``total`` seconds: each attempt
gets what is left of it, and no wait may outlast it. It also visits each deployment at most
``rounds`` times (retries only on the first visit): two deployments that both stall, resting
for less than a stall lasts, used to hand the call back and forth for as long as anyone
watched. When the call gives up, its error lists every attempt (model, server, phase, error).

Text streamed by an attempt that then failed is announced as discarded in the retry/fallback
event, so followers never show it twice; the tool calls of a failed attempt are never returned.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from kyros.core.ai.backend import (
    ChatRequest,
    Completion,
    LLMBackend,
    ModelInfo,
    OnDelta,
    ProviderError,
)
from kyros.core.ai.budget import max_output, priced, prices_of, prompt_tokens_bound, worst_case
from kyros.core.ai.cooldown import FAILURES_BEFORE_COOLDOWN, Cooldowns
from kyros.core.ai.models import ResolvedModel

OnEvent = Callable[[str, dict[str, Any]], Awaitable[None]]
RETRYABLE = frozenset({"rate_limit", "provider", "timeout", "cut"})
#: Failures another deployment may not share: worth a fallback, not a retry.
FALL_BACK_ONLY = frozenset({"auth", "context_overflow"})
_NO_INFO = ModelInfo()


@dataclass(frozen=True)
class RoutePolicy:
    """Deadlines per phase and the retry rules, in seconds (see :mod:`kyros.settings`)."""

    connect: float = 30.0
    first_token: float = 120.0
    between_chunks: float = 60.0
    total: float = 900.0
    retry_after_max: float = 30.0
    retries: int = 1
    cooldown: float = 60.0
    backoff: float = 0.5
    #: Visits of each deployment per call: 2 lets the chain be walked twice (a model that was
    #: resting at first gets its turn), then the call fails.
    rounds: int = 2

    @classmethod
    def from_settings(cls, s: Any) -> RoutePolicy:
        return cls(
            connect=s.deadline_connect,
            first_token=s.deadline_first_token,
            between_chunks=s.deadline_between_chunks,
            total=s.deadline_total,
            retry_after_max=s.retry_after_max,
            retries=s.model_retries,
            cooldown=s.cooldown_seconds,
            rounds=s.fallback_rounds,
        )


class Spender(Protocol):
    """The cost ledger as the router sees it: one reservation and one settlement per attempt."""

    @property
    def capped(self) -> bool:
        """Whether any budget applies (then output is limited so the worst case holds)."""
        ...

    async def reserve(self, model: ResolvedModel, worst: float | None) -> object:
        """Hold ``worst`` USD for a call to ``model``; raises ``BudgetExhausted`` past a cap,
        ``PriceUnknown`` (``worst`` None: the price is unknown) under any cap."""
        ...

    async def settle(
        self,
        ticket: object,
        model: ResolvedModel,
        completion: Completion | None,
        outcome: str,
        error: str | None,
    ) -> None:
        """Record what the attempt cost (``outcome`` ``ok`` or its failure class)."""
        ...


class _Attempt:
    """Counts what one attempt streamed, so a failed attempt's text can be discarded."""

    def __init__(self, on_delta: OnDelta | None) -> None:
        self.on_delta = on_delta
        self.chars = 0

    async def __call__(self, delta: str) -> None:
        self.chars += len(delta)
        if self.on_delta is not None:
            await self.on_delta(delta)


async def _no_event(kind: str, data: dict[str, Any]) -> None:
    return None


def _tried(model: ResolvedModel, exc: ProviderError, seconds: float) -> dict[str, Any]:
    """One failed attempt as the call's final error lists it."""
    return {
        "model": model.name,
        "server": model.api_base or model.provider,
        "phase": exc.phase,
        "outcome": exc.outcome,
        "error": exc.message,
        "seconds": round(seconds, 2),
    }


def _gave_up(exc: ProviderError, trail: list[dict[str, Any]]) -> ProviderError:
    """``exc`` with the list of what the call tried (in ``detail`` and, past one, in words)."""
    message = exc.message
    if len(trail) > 1:
        # The outcome names a timeout's phase: timeout_first_token.
        tried = "; ".join(f"{t['model']} at {t['server']}: {t['outcome']}" for t in trail)
        message = f"{message} — {len(trail)} attempts: {tried}"
    return ProviderError(
        message,
        kind=exc.kind,
        phase=exc.phase,
        retry_after=exc.retry_after,
        detail={"attempts": trail},
    )


class Router:
    """Routes calls for one daemon; its :class:`Cooldowns` are shared by every run."""

    def __init__(
        self,
        policy: RoutePolicy | None = None,
        cooldowns: Cooldowns | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy or RoutePolicy()
        self.cooldowns = cooldowns or Cooldowns()
        self.sleep = sleep
        self.clock = clock

    def _request(
        self,
        model: ResolvedModel,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        max_tokens: int | None,
        left: float,
    ) -> ChatRequest:
        p = self.policy
        return ChatRequest(
            model=model.litellm_model,
            messages=messages,
            api_base=model.api_base,
            api_key=model.api_key,
            tools=tools,
            max_tokens=max_tokens,
            connect_timeout=p.connect,
            first_token_timeout=p.first_token,
            between_chunks_timeout=p.between_chunks,
            total_timeout=min(p.total, left),
            backstop_timeout=p.total + 5,
        )

    def _free(
        self, chain: list[ResolvedModel], but: ResolvedModel | None = None
    ) -> list[ResolvedModel]:
        return [c for c in chain if c is not but and self.cooldowns.remaining(c.deployment) <= 0]

    async def complete(
        self,
        chain: list[ResolvedModel],
        messages: list[dict[str, Any]],
        backend: LLMBackend,
        spender: Spender,
        *,
        tools: list[dict[str, Any]] | None = None,
        on_delta: OnDelta | None = None,
        on_event: OnEvent | None = None,
    ) -> Completion:
        """One call answered by the first deployment of ``chain`` that can; raises the last
        :class:`ProviderError` (or ``BudgetExhausted``) when none can."""
        emit = on_event or _no_event
        tries: dict[str, int] = {}
        visits: dict[str, int] = {}
        trail: list[dict[str, Any]] = []
        ends = self.clock() + self.policy.total
        prompt_bound = prompt_tokens_bound(messages, tools)
        current: ResolvedModel | None = None
        previous: ResolvedModel | None = None
        while True:
            try:
                if current is None:
                    current = await self._first_free(chain, emit, ends, visits)
                left = ends - self.clock()
                if left <= 0:
                    raise self._out_of_time()
            except ProviderError as exc:
                raise _gave_up(exc, trail) from None
            model = current
            if model is not previous:
                visits[model.deployment] = visits.get(model.deployment, 0) + 1
            previous = model
            info = backend.model_info(model.litellm_model) if not model.is_demo else _NO_INFO
            prices = prices_of(model, info)
            limit = max_output(model, info)
            ticket = await spender.reserve(model, worst_case(prices, prompt_bound, limit))
            attempt = _Attempt(on_delta)
            request = self._request(model, messages, tools, limit if spender.capped else None, left)
            started = self.clock()
            try:
                completion = await backend.complete(request, attempt)
            except ProviderError as exc:
                trail.append(_tried(model, exc, self.clock() - started))
                await spender.settle(ticket, model, None, exc.outcome, exc.message)
                try:
                    current = await self._after_failure(
                        chain, model, exc, tries, attempt, emit, visits, ends
                    )
                except ProviderError as final:
                    raise _gave_up(final, trail) from None
                continue
            except BaseException:
                await asyncio.shield(
                    spender.settle(ticket, model, None, "cancelled", "the call was abandoned")
                )
                raise
            completion = priced(completion, model, prices)
            await spender.settle(ticket, model, completion, "ok", None)
            self.cooldowns.succeeded(model.deployment)
            return completion

    def _out_of_time(self) -> ProviderError:
        return ProviderError(
            f"the model call used up its total deadline of {self.policy.total:g}s "
            "(retries and fallbacks included)",
            kind="timeout",
            phase="total",
        )

    def _open(
        self, chain: list[ResolvedModel], visits: dict[str, int], but: ResolvedModel | None = None
    ) -> list[ResolvedModel]:
        """Deployments not resting that this call has not used up its visits of."""
        rounds = self.policy.rounds
        return [c for c in self._free(chain, but) if visits.get(c.deployment, 0) < rounds]

    async def _first_free(
        self, chain: list[ResolvedModel], emit: OnEvent, ends: float, visits: dict[str, int]
    ) -> ResolvedModel:
        free = self._open(chain, visits)
        if free:
            return free[0]
        wait = min(self.cooldowns.remaining(c.deployment) for c in chain)
        names = ", ".join(c.name for c in chain)
        if wait > self.policy.retry_after_max or wait >= ends - self.clock():
            raise ProviderError(
                f"every model for this call is resting after failures ({names}); the first "
                f"is free again in {wait:.0f}s",
                kind="cooldown",
            )
        await emit("model.waiting", {"models": [c.name for c in chain], "seconds": round(wait, 2)})
        await self.sleep(wait)
        free = self._open(chain, visits)
        return free[0] if free else chain[0]

    async def _after_failure(
        self,
        chain: list[ResolvedModel],
        model: ResolvedModel,
        exc: ProviderError,
        tries: dict[str, int],
        attempt: _Attempt,
        emit: OnEvent,
        visits: dict[str, int],
        ends: float,
    ) -> ResolvedModel:
        """The deployment to try next, or raise ``exc`` when the call has no way left."""
        p = self.policy
        key = model.deployment
        failures = self.cooldowns.failed(key)
        if self.clock() >= ends:
            raise self._out_of_time() from exc
        too_long = exc.retry_after is not None and exc.retry_after > p.retry_after_max
        rest = max(p.cooldown, exc.retry_after or 0.0)
        others = self._open(chain, visits, but=model)
        wait = exc.retry_after
        if wait is None:
            wait = p.backoff * 2 ** tries.get(key, 0)
        base = {
            "reason": exc.kind,
            "outcome": exc.outcome,
            "message": exc.message,
            "discard": attempt.chars > 0,
        }
        if too_long:
            # Never sleep that long inside a call: rest the deployment, go elsewhere or fail.
            self.cooldowns.cool(key, exc.retry_after or rest, exc.outcome)
            if not others:
                raise ProviderError(
                    f"{exc.message} — it asks to wait {exc.retry_after:.0f}s, longer than "
                    f"retry_after_max ({p.retry_after_max:g}s), so the call fails now instead",
                    kind=exc.kind,
                    retry_after=exc.retry_after,
                ) from exc
        # The preferred model gets its retries first, unless it stalled and another can answer
        # (a second stall would cost another whole deadline).
        # Retries belong to a deployment's first visit, and never wait past the call's deadline.
        elif (
            exc.kind in RETRYABLE
            and tries.get(key, 0) < p.retries
            and (exc.kind != "timeout" or not others)
            and visits.get(key, 0) <= 1
            and wait < ends - self.clock()
        ):
            tries[key] = tries.get(key, 0) + 1
            await emit(
                "model.retry", {"model": model.name, **base, "wait": wait, "try": tries[key]}
            )
            await self.sleep(wait)
            return model
        if (exc.kind in RETRYABLE or exc.kind in FALL_BACK_ONLY) and others:
            if exc.kind != "context_overflow":
                self.cooldowns.cool(key, rest, exc.outcome)
            nxt = others[0]
            await emit(
                "model.fallback",
                {"from": model.name, "to": nxt.name, **base, "rested_seconds": rest},
            )
            return nxt
        if failures >= FAILURES_BEFORE_COOLDOWN and exc.kind in RETRYABLE:
            self.cooldowns.cool(key, rest, exc.outcome)
        raise exc
