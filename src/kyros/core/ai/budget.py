"""A call's worst-case cost, known before it is made, and the error that stops a run at its cap.

The worst case is the prompt at a pessimistic 3 characters per token (real tokenizers give ~4
for English and code) plus every output token the call may produce: callers under a cap send that
output limit as ``max_tokens``, so the provider cannot bill more than was reserved.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from typing import Any

from kyros.core.ai.backend import CONFIGURED, LISTED, REPORTED, UNKNOWN, Completion, ModelInfo
from kyros.core.ai.models import ResolvedModel
from kyros.errors import KyrosError

#: Output tokens assumed (and asked for at most) when neither the catalogue nor the provider's
#: price list gives a model's limit.
DEFAULT_MAX_OUTPUT = 4096
CHARS_PER_TOKEN = 3
#: Tokens a message's framing costs beyond its text (role, separators).
MESSAGE_OVERHEAD = 8
PER_MILLION = 1_000_000


class BudgetExhausted(KyrosError):
    """A call's worst case would take spending past a cap; the call was not made."""

    code = "budget_exhausted"


class PriceUnknown(BudgetExhausted):
    """A budget applies to a call whose model has no known price: its worst case cannot be
    bounded, so the call was not made (the run ends as an exhausted budget does)."""

    code = "price_unknown"


#: ``Prices.source`` of a loopback server counted free by default (recorded as configured:
#: the ``free_loopback`` setting says so).
LOOPBACK = "loopback"


@dataclass(frozen=True)
class Prices:
    """USD per token, and where they come from: ``configured``, ``listed``, ``loopback`` or
    ``unknown`` (then ``input`` and ``output`` are None)."""

    input: float | None
    output: float | None
    cached: float | None
    source: str = UNKNOWN
    #: In words: ``[models.fast]``, ``litellm's price list``, ``loopback api_base``.
    where: str | None = None

    @property
    def known(self) -> bool:
        return self.input is not None and self.output is not None


def prices_of(model: ResolvedModel, info: ModelInfo) -> Prices:
    """A price set in settings (per million) first, then the provider's price list, then free
    for a loopback server, else unknown. A price set in settings for only one direction takes
    the other from the price list; without one there, the price is unknown."""

    def pick(override: float | None, listed: float | None) -> float | None:
        return override / PER_MILLION if override is not None else listed

    if model.is_demo:
        return Prices(0.0, 0.0, 0.0, CONFIGURED, "built in: scripted replies, no provider")
    if model.price_in is not None or model.price_out is not None:
        price_in = pick(model.price_in, info.price_in)
        price_out = pick(model.price_out, info.price_out)
        if price_in is not None and price_out is not None:
            cached = pick(model.price_cached, info.price_cached)
            return Prices(
                price_in,
                price_out,
                cached if cached is not None else price_in,
                CONFIGURED,
                model.price_from or "settings",
            )
    if info.price_in is not None and info.price_out is not None:
        cached = info.price_cached if info.price_cached is not None else info.price_in
        return Prices(info.price_in, info.price_out, cached, LISTED, "litellm's price list")
    if model.free_loopback:
        return Prices(0.0, 0.0, 0.0, LOOPBACK, "free: a loopback api_base (free_loopback)")
    return Prices(None, None, None)


def max_output(model: ResolvedModel, info: ModelInfo) -> int:
    """Output tokens a call may produce at most."""
    return model.max_output or info.max_output or DEFAULT_MAX_OUTPUT


def prompt_tokens_bound(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> int:
    """A pessimistic token count of a prompt, without loading a tokenizer."""
    chars = 0
    for message in messages:
        content = message.get("content")
        chars += len(content) if isinstance(content, str) else len(json.dumps(content or ""))
        if message.get("tool_calls"):
            chars += len(json.dumps(message["tool_calls"]))
    if tools:
        chars += len(json.dumps(tools))
    return math.ceil(chars / CHARS_PER_TOKEN) + MESSAGE_OVERHEAD * len(messages)


def worst_case(prices: Prices, prompt_tokens: int, output_tokens: int) -> float | None:
    """The most a call with this prompt and output limit can cost; None when the price is
    unknown (nothing bounds it)."""
    if prices.input is None or prices.output is None:
        return None
    return prompt_tokens * prices.input + output_tokens * prices.output


def priced(completion: Completion, model: ResolvedModel, prices: Prices) -> Completion:
    """``completion`` with its cost and where it came from, in order: a price set in settings,
    the cost the provider reported, the price list, free for a loopback server, else unknown
    (None, never 0)."""
    if prices.source == CONFIGURED or (prices.known and completion.reported_cost is None):
        assert prices.input is not None and prices.output is not None
        fresh = max(0, completion.tokens_in - completion.cached_tokens)
        cached = prices.cached if prices.cached is not None else prices.input
        cost = (
            fresh * prices.input
            + completion.cached_tokens * cached
            + completion.tokens_out * prices.output
        )
        source = LISTED if prices.source == LISTED else CONFIGURED
        return replace(completion, cost=cost, cost_source=source)
    if completion.reported_cost is not None:
        return replace(completion, cost=completion.reported_cost, cost_source=REPORTED)
    return replace(completion, cost=None, cost_source=UNKNOWN)


def ledger_source(prices: Prices) -> str:
    """The ledger's provenance word for a price known before the call."""
    return CONFIGURED if prices.source == LOOPBACK else prices.source
