"""Which model a run uses, and whether it can be called at all, decided before any work starts."""

from __future__ import annotations

from dataclasses import dataclass, field

from kyros.core.ai.demo import DEMO_MODEL

# Re-exported (the redundant aliases tell mypy so): they live in kyros.credentials now.
from kyros.credentials import KEYLESS as KEYLESS
from kyros.credentials import PROVIDER_KEYS as PROVIDER_KEYS
from kyros.errors import ModelNotConfigured

#: What to use when only a key is present, in this order.
AUTODETECT: tuple[tuple[str, str], ...] = (
    ("ANTHROPIC_API_KEY", "anthropic/claude-sonnet-4-5"),
    ("OPENAI_API_KEY", "openai/gpt-4.1-mini"),
    ("GEMINI_API_KEY", "gemini/gemini-2.5-flash"),
    ("OPENROUTER_API_KEY", "openrouter/openai/gpt-4.1-mini"),
)

HOW_TO = (
    "Configure a model in one of these ways:\n"
    "  • export a provider key, e.g. OPENAI_API_KEY or ANTHROPIC_API_KEY;\n"
    "  • a local OpenAI-compatible server (Ollama, vLLM, LM Studio): "
    "--model openai/NAME --api-base http://127.0.0.1:11434/v1;\n"
    "  • set `model` in config.toml or KYROS_MODEL;\n"
    "  • or try the flow without any key: --model demo"
)


@dataclass(frozen=True)
class ResolvedModel:
    """A model a run can call: the name the user chose and what litellm is given."""

    name: str
    litellm_model: str
    provider: str
    api_base: str | None = None
    api_key: str | None = field(default=None, repr=False)
    #: The catalogue entry's overrides, when the model came from ``[models.ALIAS]``.
    context_window: int | None = None
    max_output: int | None = None
    #: USD per 1M tokens, set in settings (``[models.ALIAS]`` or ``[prices.…]``).
    price_in: float | None = None
    price_out: float | None = None
    price_cached: float | None = None
    #: The settings entry those prices come from (``[models.fast]``, ``prices."URL"``).
    price_from: str | None = None
    #: Whether, with no other price known, the model counts as free (a loopback server).
    free_loopback: bool = False
    #: Whether ``name`` is a catalogue alias (``[models.NAME]``) rather than a model id.
    aliased: bool = False

    @property
    def is_demo(self) -> bool:
        return self.name == DEMO_MODEL

    @property
    def deployment(self) -> str:
        """What a cooldown is keyed by: the same model id on another server is another one."""
        return f"{self.litellm_model}@{self.api_base or ''}"


def _provider_of(model: str) -> str:
    return _known_family(model) or "openai"


def _known_family(model: str) -> str | None:
    """The provider a model name says it belongs to: its ``provider/`` prefix, or a bare name
    of a well-known family (``gpt-4.1``, ``claude-…``, ``gemini-…``); None otherwise."""
    if "/" in model:
        return model.split("/", 1)[0]
    lowered = model.lower()
    if lowered.startswith(("gpt-", "o1", "o3", "o4", "chatgpt")):
        return "openai"
    if lowered.startswith("claude"):
        return "anthropic"
    if lowered.startswith("gemini"):
        return "gemini"
    return None


def resolve_model(
    requested: str | None,
    api_base: str | None,
    provider_keys: dict[str, str],
) -> ResolvedModel:
    """Pick the model for a run, or raise :class:`ModelNotConfigured` saying how to set one up."""
    if requested == DEMO_MODEL:
        return ResolvedModel(
            name=DEMO_MODEL, litellm_model="kyros-scripted-demo/demo", provider="demo"
        )
    if not requested:
        if api_base:
            raise ModelNotConfigured(
                "--api-base was given without a model: name the server's model with "
                "--model openai/NAME"
            )
        for env_name, model in AUTODETECT:
            if provider_keys.get(env_name):
                requested = model
                break
        else:
            raise ModelNotConfigured("no AI model is configured.\n" + HOW_TO)
    assert requested is not None
    model = requested
    if api_base and "/" not in model:
        model = f"openai/{model}"  # an OpenAI-compatible server speaks the openai protocol
    if _known_family(model) is None:
        # A bare name of no family ("nosuchmodel") is not "an OpenAI model without a key".
        raise ModelNotConfigured(
            f"model {requested!r} is unknown: name a catalogue entry, or a model as "
            "PROVIDER/NAME (openai/gpt-4.1-mini, anthropic/claude-sonnet-4-5, or openai/NAME "
            "with --api-base for an OpenAI-compatible server)",
            code="model_unknown",
            hint="kyros models list",
        )
    provider = _provider_of(model)
    if provider in KEYLESS:
        return ResolvedModel(
            name=requested, litellm_model=model, provider=provider, api_base=api_base
        )
    key_var = PROVIDER_KEYS.get(provider)
    key = provider_keys.get(key_var) if key_var else None
    if api_base:
        # Local OpenAI-compatible servers rarely check keys, but the OpenAI SDK insists on one.
        return ResolvedModel(
            name=requested,
            litellm_model=model,
            provider=provider,
            api_base=api_base,
            api_key=key or "sk-no-key-required",
        )
    if key_var and not key:
        raise ModelNotConfigured(
            f"model {requested!r} needs {key_var}, which is not set.\n" + HOW_TO
        )
    return ResolvedModel(name=requested, litellm_model=model, provider=provider, api_key=key)


def family(model: str) -> str:
    """The provider family of a model name (``openai``, ``anthropic`` …)."""
    return _provider_of(model)


def other_family(model: str | None, provider_keys: dict[str, str]) -> str | None:
    """A configured model of another provider family than ``model``: a second opinion from
    another vendor. None when no such provider has a key."""
    if not model:
        return None
    mine = family(model)
    for env_name, candidate in AUTODETECT:
        if provider_keys.get(env_name) and family(candidate) != mine:
            return candidate
    return None
