"""Which model a run calls, and why: the one place that choice is made (ADR 0020).

The order, first match wins:

1. ``run`` — the run's explicit choice (``--model``, or a pipeline's ``--model`` for its plan
   and implement stages);
2. ``escalation`` — the ``stronger_model`` of the escalation step that created the run;
3. ``agent`` — the agent's own model;
4. ``role:ROLE`` — the model configured for the run's role (``[roles.implement]``);
5. ``default`` — the ``model`` setting, else the first provider with a key.

A critic has two more: ``critic:other-vendor`` (the ``critic_other_vendor`` setting replaced a
model of the change's own vendor with another vendor's, and says which) and ``critic:author``
(no critic model is configured and no other vendor is: the change's own model reviews it).

The chosen model carries its server and key: a catalogue alias (``[models.strong]``) is called
at its own ``api_base`` with its own key, whatever server an earlier stage used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kyros.core.ai.catalogue import Catalogue
from kyros.core.ai.demo import DEMO_MODEL
from kyros.core.ai.models import ResolvedModel, family
from kyros.errors import KyrosError


@dataclass(frozen=True)
class ModelChoice:
    """A resolved model and the reason it was chosen."""

    resolved: ResolvedModel
    reason: str
    #: The model a critic swap replaced (None when nothing was replaced).
    replaced: str | None = None

    def record(self) -> dict[str, Any]:
        """What a run stores and its events say about the choice (no key, ever)."""
        out: dict[str, Any] = {
            "model": self.resolved.name,
            "server": server_of(self.resolved),
            "reason": self.reason,
        }
        if self.replaced is not None:
            out["replaced"] = self.replaced
        return out


def server_of(resolved: ResolvedModel) -> str:
    """Where calls to ``resolved`` go: its base URL, or its provider's own API."""
    if resolved.is_demo:
        return "built in"
    return resolved.api_base or f"{resolved.provider} API"


def configured_role_model(catalogue: Catalogue, role: str | None) -> str | None:
    """The model ``[roles.ROLE]`` names, or None (the default model is not a role's choice)."""
    spec = catalogue.settings.roles.get(role or "")
    return spec.model if spec else None


def choose(
    catalogue: Catalogue,
    *,
    role: str | None,
    run_model: str | None = None,
    api_base: str | None = None,
    escalation: str | None = None,
    served: tuple[str, str | None] | None = None,
    agent_model: str | None = None,
) -> ModelChoice:
    """The model a run uses, in the documented order; raises ``ModelNotConfigured``.

    ``api_base`` is the run's explicit server (``--api-base``). ``served`` is the model and
    server of the stage an escalation follows: a stronger model that is not a catalogue alias
    and is of that model's family is called at that server (an alias goes to its own server).
    """
    if run_model:
        return ModelChoice(catalogue.resolve(run_model, api_base), "run")
    if escalation:
        base = api_base
        uncatalogued = escalation not in catalogue.settings.models
        if (
            base is None
            and served is not None
            and uncatalogued
            and _family_of(catalogue, escalation) == _family_of(catalogue, served[0])
        ):
            base = served[1]
        return ModelChoice(catalogue.resolve(escalation, base), "escalation")
    if agent_model:
        return ModelChoice(catalogue.resolve(agent_model, api_base), "agent")
    role_model = configured_role_model(catalogue, role)
    if role_model:
        return ModelChoice(catalogue.resolve(role_model, api_base), f"role:{role}")
    return ModelChoice(catalogue.resolve(None, api_base), "default")


def choose_critic(
    catalogue: Catalogue,
    *,
    judged: dict[str, Any] | None,
    other_vendor: bool,
    run_model: str | None = None,
    api_base: str | None = None,
    agent_model: str | None = None,
) -> ModelChoice:
    """A critic's model: as :func:`choose`, then — for a review of a run's change — another
    vendor's model in place of one of the change's own vendor when ``other_vendor`` is on."""
    if run_model or agent_model or judged is None or not judged.get("model"):
        return choose(
            catalogue,
            role="critic",
            run_model=run_model,
            api_base=api_base,
            agent_model=agent_model,
        )
    author = str(judged["model"])
    if author == DEMO_MODEL:
        # A scripted change gets a scripted review: deterministic, and no provider is called
        # for a demo because a key happens to be set.
        return ModelChoice(catalogue.resolve(DEMO_MODEL), "critic:author")
    candidate = configured_role_model(catalogue, "critic") or catalogue.settings.model
    if other_vendor and (
        candidate is None or _family_of(catalogue, candidate) == _family_of(catalogue, author)
    ):
        other = catalogue.other_family(author)
        if other is not None and other != candidate:
            return ModelChoice(
                catalogue.resolve(other, api_base), "critic:other-vendor", replaced=candidate
            )
    if candidate is None:
        # Nobody else to ask: the change's own model reviews it, where it was served.
        return ModelChoice(
            catalogue.resolve(author, api_base or judged.get("api_base")), "critic:author"
        )
    return choose(catalogue, role="critic", api_base=api_base)


def _family_of(catalogue: Catalogue, name: str) -> str:
    try:
        return family(catalogue.resolve(name).litellm_model)
    except KyrosError:
        spec = catalogue.settings.models.get(name)
        return family(spec.model if spec else name)
