"""Which model a run uses and why (kyros.core.ai.choice): the documented order, the server that
travels with the model, and the critic's vendor swap as a setting that says what it replaced."""

from __future__ import annotations

from typing import Any

import pytest

from kyros.core.ai.catalogue import Catalogue
from kyros.core.ai.choice import choose, choose_critic
from kyros.errors import ModelNotConfigured
from kyros.settings.model import Settings

A = "http://127.0.0.1:1/v1"
B = "http://127.0.0.1:2/v1"


def catalogue(**extra: Any) -> Catalogue:
    settings = Settings(
        models={
            "cheap": {"model": "openai/coder1", "api_base": A, "key": "none"},
            "strong": {"model": "openai/strong2", "api_base": B, "key": "none"},
            "mine": {"model": "openai/agent-model", "api_base": A, "key": "none"},
            "planm": {"model": "openai/plan-m", "api_base": A, "key": "none"},
            "judge": {"model": "openai/judge", "api_base": B, "key": "none"},
            "claude": {"model": "anthropic/claude-x", "api_base": B, "key": "none"},
        },
        **{"roles": {"plan": {"model": "planm"}, "implement": {"model": "cheap"}}, **extra},
    )
    return Catalogue(settings, keys=dict)


def test_the_order_is_run_escalation_agent_role_default() -> None:
    c = catalogue(model="cheap")
    picks = [
        choose(c, role="implement", run_model="judge", escalation="strong", agent_model="mine"),
        choose(c, role="implement", escalation="strong", agent_model="mine"),
        choose(c, role="implement", agent_model="mine"),
        choose(c, role="implement"),
        choose(c, role="plan"),
        choose(c, role="critic"),
    ]
    assert [(p.resolved.name, p.reason) for p in picks] == [
        ("judge", "run"),
        ("strong", "escalation"),
        ("mine", "agent"),
        ("cheap", "role:implement"),
        ("planm", "role:plan"),
        ("cheap", "default"),
    ]
    # Each model carries its own server: the stronger one is not called at the cheap one's.
    assert picks[1].record() == {"model": "strong", "server": B, "reason": "escalation"}
    assert picks[3].resolved.api_base == A


def test_an_uncatalogued_stronger_model_is_served_where_its_family_was() -> None:
    c = catalogue()
    same = choose(c, role="implement", escalation="openai/bigger", served=("cheap", A))
    assert (same.resolved.litellm_model, same.resolved.api_base) == ("openai/bigger", A)
    # A catalogue alias always goes to its own server, whatever served the stage before.
    alias = choose(c, role="implement", escalation="strong", served=("cheap", A))
    assert alias.resolved.api_base == B


def test_no_model_anywhere_says_how_to_configure_one() -> None:
    with pytest.raises(ModelNotConfigured):
        choose(Catalogue(Settings(), keys=dict), role="implement")


def test_the_critic_swaps_a_same_vendor_model_only_when_the_setting_is_on() -> None:
    judged = {"model": "cheap", "api_base": A}
    swapped = choose_critic(
        catalogue(roles={"critic": {"model": "judge"}}), judged=judged, other_vendor=True
    )
    assert (swapped.resolved.name, swapped.reason, swapped.replaced) == (
        "claude",
        "critic:other-vendor",
        "judge",
    )
    assert swapped.record()["replaced"] == "judge"
    kept = choose_critic(
        catalogue(roles={"critic": {"model": "judge"}}), judged=judged, other_vendor=False
    )
    assert (kept.resolved.name, kept.reason, kept.replaced) == ("judge", "role:critic", None)
    # A configured critic of another vendor already is a second opinion: nothing to replace.
    other = choose_critic(
        catalogue(roles={"critic": {"model": "claude"}}), judged=judged, other_vendor=True
    )
    assert (other.resolved.name, other.reason) == ("claude", "role:critic")


def test_a_critic_without_another_vendor_reviews_with_the_authors_model_where_it_ran() -> None:
    c = Catalogue(
        Settings(models={"cheap": {"model": "openai/coder1", "api_base": A, "key": "none"}}),
        keys=dict,
    )
    pick = choose_critic(c, judged={"model": "cheap", "api_base": A}, other_vendor=True)
    assert (pick.resolved.name, pick.reason, pick.resolved.api_base) == (
        "cheap",
        "critic:author",
        A,
    )
    # An explicit choice is the run's, swap or not.
    explicit = choose_critic(c, judged={"model": "cheap"}, other_vendor=True, run_model="cheap")
    assert explicit.reason == "run"
