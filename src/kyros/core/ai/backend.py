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
    total_timeout: float = 600.0
    first_token_timeout: float = 120.0
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


@dataclass(frozen=True)
class Completion:
    """What a finished call returned, with its cost."""

    text: str
    model: str
    tokens_in: int
    tokens_out: int
    cached_tokens: int
    cost: float
    latency_ms: float
    finish_reason: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()

    def assistant_message(self) -> dict[str, Any]:
        """This answer as the assistant message that continues the conversation."""
        message: dict[str, Any] = {"role": "assistant", "content": self.text or None}
        if self.tool_calls:
            message["tool_calls"] = [call.to_message() for call in self.tool_calls]
        return message


class ProviderError(KyrosError):
    """A model call failed. ``kind`` classifies it: auth, rate_limit, timeout, context_overflow,
    bad_request, provider."""

    code = "provider_error"

    def __init__(self, message: str, *, kind: str, detail: Any = None) -> None:
        super().__init__(message, detail=detail)
        self.kind = kind


class LLMBackend(Protocol):
    """Anything that can answer a chat request, streaming text deltas to ``on_delta``."""

    async def complete(self, request: ChatRequest, on_delta: OnDelta | None = None) -> Completion:
        """Run one call to completion; raises :class:`ProviderError` on failure."""
        ...

    def context_window(self, model: str) -> int:
        """Input tokens the model accepts (a conservative default when unknown)."""
        ...
