"""`kyros models test`: one tiny call to one model, measured and written to the ledger.

The call goes through the :class:`~kyros.core.ai.router.Router` with a chain of just that model
(no fallback can hide a failure) and without retries, so exactly one request reaches the
provider — unless the model is resting after failures, which the result then says. A provider
failure is a result (``ok`` false, with its classified ``error``), not an exception; a model
that cannot be called at all (unknown, no key) raises :class:`~kyros.errors.ModelNotConfigured`
or :class:`~kyros.errors.NotFound`.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from kyros.core.ai.backend import Completion, LLMBackend, ProviderError
from kyros.core.ai.catalogue import Catalogue
from kyros.core.ai.demo import DEMO_MODEL
from kyros.core.ai.models import ResolvedModel
from kyros.core.ai.router import Router
from kyros.core.store import ledger
from kyros.core.store.engine import Store
from kyros.errors import NotFound
from kyros.redaction import Redactor

PROMPT = "Reply with the single word: ok"
#: The ledger's role of a test call.
TEST_ROLE = "test"
REPLY_CHARS = 200
ERROR_CHARS = 500
#: A test answers one word: longer than this and something is wrong (seconds, per deadline).
PROBE_DEADLINE = 120.0


class LedgerSpender:
    """The :class:`~kyros.core.ai.router.Spender` of calls outside any run (no caps apply):
    each attempt becomes one settled ``usage`` row with ``role`` and no run, agent or project."""

    capped = False

    def __init__(self, store: Store, role: str, redact: Redactor) -> None:
        self.store, self.role, self.redact = store, role, redact

    async def reserve(self, model: ResolvedModel, worst: float | None) -> object:
        return None

    async def settle(
        self,
        ticket: object,
        model: ResolvedModel,
        completion: Completion | None,
        outcome: str,
        error: str | None,
    ) -> None:
        values = ledger.attempt_values(completion, outcome, self.redact(error) if error else None)
        async with self.store.write() as conn:
            await ledger.record(
                conn,
                run_id=None,
                agent=None,
                project=None,
                model=model.name,
                provider=model.provider,
                role=self.role,
                **values,
            )


def _explicit_provider(name: str) -> bool:
    """``name`` reads as a litellm id with a provider prefix (``openai/…``, ``ollama/…``)."""
    prefix, _, rest = name.partition("/")
    return bool(prefix and rest)


def known_name(catalogue: Catalogue, backend: LLMBackend | None, name: str) -> bool:
    """Whether ``name`` is something kyros could call: an alias, a model a role or the settings
    name, ``demo``, a ``provider/model`` id, or a bare id litellm's price list knows. A typo
    (``fsat``) is not, and must not become a call to a default provider."""
    s = catalogue.settings
    named = {*s.models, DEMO_MODEL}
    if s.model:
        named.add(s.model)
    for spec in s.roles.values():
        named.update(n for n in (spec.model, *spec.fallbacks) if n)
    if name in named or _explicit_provider(name):
        return True
    if backend is None:
        return False
    info = backend.model_info(name)
    return any(v is not None for v in (info.context_window, info.price_in, info.max_output))


def _one_attempt(router: Router) -> Router:
    """The daemon's router, sharing its cooldowns, but making one attempt with short deadlines."""
    p = router.policy
    policy = replace(
        p,
        retries=0,
        first_token=min(p.first_token, PROBE_DEADLINE),
        between_chunks=min(p.between_chunks, PROBE_DEADLINE),
        total=min(p.total, PROBE_DEADLINE),
    )
    return Router(policy, router.cooldowns, router.sleep)


async def test_model(
    catalogue: Catalogue, router: Router, backend: LLMBackend, store: Store, name: str
) -> dict[str, Any]:
    """Call ``name`` once with a one-word prompt: what it answered, how fast, for how much."""
    if not known_name(catalogue, backend, name):
        raise NotFound(
            f"no model named {name!r}: `kyros models list` shows the configured ones; a model "
            "outside the catalogue is named by its litellm id, e.g. openai/gpt-4.1-mini"
        )
    resolved = catalogue.resolve(name)  # ModelNotConfigured: no key, no model
    redact = Redactor(catalogue.keys().values())
    spender = LedgerSpender(store, TEST_ROLE, redact)
    result: dict[str, Any] = {
        "name": resolved.name,
        "model": resolved.litellm_model if not resolved.is_demo else DEMO_MODEL,
        "provider": resolved.provider,
        "api_base": resolved.api_base,
        "ok": False,
        "latency_ms": None,
        "tokens_in": 0,
        "tokens_out": 0,
        "cost": 0.0,
        "cost_source": None,
        "reply": None,
        "error": None,
    }
    messages = [{"role": "user", "content": PROMPT}]
    started = time.perf_counter()
    try:
        completion = await _one_attempt(router).complete([resolved], messages, backend, spender)
    except ProviderError as exc:
        result["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
        result["error"] = {
            "kind": exc.kind,
            "outcome": exc.outcome,
            "message": redact(exc.message)[:ERROR_CHARS],
        }
        return result
    result.update(
        ok=True,
        latency_ms=round(completion.latency_ms, 1),
        tokens_in=completion.tokens_in,
        tokens_out=completion.tokens_out,
        cost=completion.cost,
        cost_source=completion.cost_source,
        reply=completion.text[:REPLY_CHARS],
    )
    return result
