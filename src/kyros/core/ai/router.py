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

Text streamed by an attempt that then failed is announced as discarded in the retry/fallback
event, so followers never show it twice; the tool calls of a failed attempt are never returned.
"""

from __future__ import annotations

import asyncio
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


class Router:
    """Routes calls for one daemon; its :class:`Cooldowns` are shared by every run."""

    def __init__(
        self,
        policy: RoutePolicy | None = None,
        cooldowns: Cooldowns | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.policy = policy or RoutePolicy()
        self.cooldowns = cooldowns or Cooldowns()
        self.sleep = sleep

    def _request(
        self,
        model: ResolvedModel,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        max_tokens: int | None,
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
            total_timeout=p.total,
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
        prompt_bound = prompt_tokens_bound(messages, tools)
        current: ResolvedModel | None = None
        while True:
            if current is None:
                current = await self._first_free(chain, emit)
            model = current
            info = backend.model_info(model.litellm_model) if not model.is_demo else _NO_INFO
            prices = prices_of(model, info)
            limit = max_output(model, info)
            ticket = await spender.reserve(model, worst_case(prices, prompt_bound, limit))
            attempt = _Attempt(on_delta)
            request = self._request(model, messages, tools, limit if spender.capped else None)
            try:
                completion = await backend.complete(request, attempt)
            except ProviderError as exc:
                await spender.settle(ticket, model, None, exc.outcome, exc.message)
                current = await self._after_failure(chain, model, exc, tries, attempt, emit)
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

    async def _first_free(self, chain: list[ResolvedModel], emit: OnEvent) -> ResolvedModel:
        free = self._free(chain)
        if free:
            return free[0]
        wait = min(self.cooldowns.remaining(c.deployment) for c in chain)
        names = ", ".join(c.name for c in chain)
        if wait > self.policy.retry_after_max:
            raise ProviderError(
                f"every model for this call is resting after failures ({names}); the first "
                f"is free again in {wait:.0f}s",
                kind="cooldown",
            )
        await emit("model.waiting", {"models": [c.name for c in chain], "seconds": round(wait, 2)})
        await self.sleep(wait)
        return self._free(chain)[0] if self._free(chain) else chain[0]

    async def _after_failure(
        self,
        chain: list[ResolvedModel],
        model: ResolvedModel,
        exc: ProviderError,
        tries: dict[str, int],
        attempt: _Attempt,
        emit: OnEvent,
    ) -> ResolvedModel:
        """The deployment to try next, or raise ``exc`` when the call has no way left."""
        p = self.policy
        key = model.deployment
        failures = self.cooldowns.failed(key)
        too_long = exc.retry_after is not None and exc.retry_after > p.retry_after_max
        rest = max(p.cooldown, exc.retry_after or 0.0)
        others = self._free(chain, but=model)
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
        elif (
            exc.kind in RETRYABLE
            and tries.get(key, 0) < p.retries
            and (exc.kind != "timeout" or not others)
        ):
            tries[key] = tries.get(key, 0) + 1
            wait = exc.retry_after
            if wait is None:
                wait = p.backoff * 2 ** (tries[key] - 1)
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
