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

from kyros.core.ai.backend import Completion, ModelInfo
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


@dataclass(frozen=True)
class Prices:
    """USD per token; None where nothing is known (then the model counts as free)."""

    input: float | None
    output: float | None
    cached: float | None

    @property
    def known(self) -> bool:
        return self.input is not None or self.output is not None


def prices_of(model: ResolvedModel, info: ModelInfo) -> Prices:
    """Catalogue overrides (per million) first, then the provider's price list."""

    def pick(override: float | None, listed: float | None) -> float | None:
        return override / PER_MILLION if override is not None else listed

    price_in = pick(model.price_in, info.price_in)
    cached = pick(model.price_cached, info.price_cached)
    return Prices(
        price_in, pick(model.price_out, info.price_out), cached if cached is not None else price_in
    )


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


def worst_case(prices: Prices, prompt_tokens: int, output_tokens: int) -> float:
    """The most a call with this prompt and output limit can cost."""
    return prompt_tokens * (prices.input or 0.0) + output_tokens * (prices.output or 0.0)


def priced(completion: Completion, model: ResolvedModel, prices: Prices) -> Completion:
    """``completion`` with its cost from the catalogue's prices when the catalogue sets any
    (a local or private deployment the provider's price list cannot know)."""
    if model.price_in is None and model.price_out is None:
        return completion
    fresh = max(0, completion.tokens_in - completion.cached_tokens)
    cost = (
        fresh * (prices.input or 0.0)
        + completion.cached_tokens * (prices.cached or 0.0)
        + completion.tokens_out * (prices.output or 0.0)
    )
    return replace(completion, cost=cost)
