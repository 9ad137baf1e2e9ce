"""The seam between runs and language models: :class:`LLMBackend` and its value types."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from kyros.errors import KyrosError

OnDelta = Callable[[str], Awaitable[None]]


@dataclass(frozen=True)
class ChatRequest:
    """One model call. ``api_key`` travels per call and is never logged or stored."""

    model: str
    messages: list[dict[str, Any]]
    api_base: str | None = None
    api_key: str | None = field(default=None, repr=False)
    temperature: float | None = None
    max_tokens: int | None = None
    #: kyros's own deadlines, by phase (seconds): until the response starts, from then to the
    #: first token, the longest silence between tokens, and the whole call.
    connect_timeout: float = 30.0
    first_token_timeout: float = 120.0
    between_chunks_timeout: float = 60.0
    total_timeout: float = 600.0
    #: The HTTP client's own timeout, a backstop behind the deadlines above. Fixed for a
    #: policy, never the call's time left: litellm caches one provider client per distinct set
    #: of options, and a timeout that differs on every call built a new client (and its
    #: connection pool) every call — ~1 ms each, and no connection reuse.
    backstop_timeout: float = 605.0
    #: OpenAI function-calling specs the model may call; None for a plain chat.
    tools: list[dict[str, Any]] | None = None


@dataclass(frozen=True)
class ToolCall:
    """One complete tool call the model asked for. ``arguments`` is the raw JSON text: it is
    only parsed (and validated) by the tool layer, so a malformed call is told to the model."""

    id: str
    name: str
    arguments: str

    def to_message(self) -> dict[str, Any]:
        """The call as it appears in an assistant message of the OpenAI chat format."""
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


#: Where a call's cost came from (the ledger's ``cost_source``): a price set in settings, a
#: cost the provider reported in its answer, litellm's price list, or nowhere (cost unknown).
CONFIGURED, REPORTED, LISTED, UNKNOWN = "configured", "reported", "listed", "unknown"
COST_SOURCES = (CONFIGURED, REPORTED, LISTED, UNKNOWN)


@dataclass(frozen=True)
class Completion:
    """What a finished call returned, with its cost: None when no price is known for it."""

    text: str
    model: str
    tokens_in: int
    tokens_out: int
    cached_tokens: int
    cost: float | None
    latency_ms: float
    finish_reason: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    #: One of :data:`COST_SOURCES`.
    cost_source: str = UNKNOWN
    #: The cost the provider reported in its usage (USD), when it did.
    reported_cost: float | None = None

    def assistant_message(self) -> dict[str, Any]:
        """This answer as the assistant message that continues the conversation."""
        message: dict[str, Any] = {"role": "assistant", "content": self.text or None}
        if self.tool_calls:
            message["tool_calls"] = [call.to_message() for call in self.tool_calls]
        return message


#: Failure classes of a model call. ``cut``: the answer stopped mid-stream; ``cooldown``: every
#: model that could answer is resting after failures.
FAILURE_KINDS = (
    "auth",
    "rate_limit",
    "timeout",
    "context_overflow",
    "bad_request",
    "provider",
    "cut",
    "cooldown",
)
#: Phases a call can time out in, in order.
PHASES = ("connect", "first_token", "between_chunks", "total")


class ProviderError(KyrosError):
    """A model call failed. ``kind`` is one of :data:`FAILURE_KINDS`; a timeout names its
    ``phase``; a rate limit may carry the provider's ``retry_after`` (seconds)."""

    code = "provider_error"

    def __init__(
        self,
        message: str,
        *,
        kind: str,
        detail: Any = None,
        phase: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, detail=detail)
        self.kind = kind
        self.phase = phase
        self.retry_after = retry_after

    @property
    def outcome(self) -> str:
        """The ledger's word for this failure: ``rate_limit``, ``timeout_first_token`` …"""
        return f"timeout_{self.phase}" if self.kind == "timeout" and self.phase else self.kind


@dataclass(frozen=True)
class ModelInfo:
    """What the provider's price list says about a model; None where it says nothing."""

    context_window: int | None = None
    max_output: int | None = None
    #: USD per token.
    price_in: float | None = None
    price_out: float | None = None
    price_cached: float | None = None
    tools: bool | None = None
    vision: bool | None = None


class LLMBackend(Protocol):
    """Anything that can answer a chat request, streaming text deltas to ``on_delta``."""

    async def complete(self, request: ChatRequest, on_delta: OnDelta | None = None) -> Completion:
        """Run one call to completion; raises :class:`ProviderError` on failure."""
        ...

    def context_window(self, model: str) -> int:
        """Input tokens the model accepts (a conservative default when unknown)."""
        ...

    def model_info(self, model: str) -> ModelInfo:
        """Limits and prices known for ``model`` (all None when unknown)."""
        ...
