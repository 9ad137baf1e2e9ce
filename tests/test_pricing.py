"""Where a call's price comes from, in order: settings (per model or per api_base), the cost the
provider reports, litellm's price list, free on loopback, else unknown — without I/O."""

from __future__ import annotations

import pytest

from kyros.core.ai.backend import Completion, ModelInfo
from kyros.core.ai.budget import priced, prices_of, worst_case
from kyros.core.ai.catalogue import Catalogue
from kyros.core.ai.pricing import is_loopback
from kyros.settings.model import Settings

LISTED = ModelInfo(price_in=1e-6, price_out=2e-6)
UNLISTED = ModelInfo()


def _catalogue(**settings: object) -> Catalogue:
    return Catalogue(Settings.model_validate(settings), lambda: {"OPENAI_API_KEY": "sk-x"})


def _done(reported: float | None = None) -> Completion:
    return Completion(
        text="ok",
        model="m",
        tokens_in=1000,
        tokens_out=100,
        cached_tokens=0,
        cost=None,
        latency_ms=1.0,
        reported_cost=reported,
    )


@pytest.mark.parametrize(
    ("url", "loopback"),
    [
        ("http://127.0.0.1:11434/v1", True),
        ("http://127.8.9.10/v1", True),
        ("http://[::1]:8000/v1", True),
        ("http://localhost:1234", True),
        ("http://api.localhost/v1", True),
        ("http://10.0.0.5:8000/v1", False),
        ("https://openrouter.ai/api/v1", False),
        ("http://127.0.0.1.evil.example/v1", False),
        (None, False),
        ("not a url", False),
    ],
)
def test_loopback_is_read_from_the_url(url: str | None, loopback: bool) -> None:
    assert is_loopback(url) is loopback


def test_settings_beat_the_list_by_alias_id_or_api_base() -> None:
    cat = _catalogue(
        models={"fast": {"model": "openai/gpt-x", "price_in": 3.0, "price_out": 4.0}},
        prices={
            "openai/by-id": {"price_in": 5.0, "price_out": 6.0},
            "https://gw.example/v1": {"price_in": 7.0, "price_out": 8.0, "price_cached": 0.5},
        },
    )
    fast = prices_of(cat.resolve("fast"), LISTED)
    assert (fast.source, fast.where, fast.input, fast.output) == (
        "configured",
        "[models.fast]",
        3e-6,
        4e-6,
    )
    by_id = prices_of(cat.resolve("openai/by-id"), LISTED)
    assert (by_id.source, by_id.input) == ("configured", 5e-6)
    gateway = prices_of(cat.resolve("openai/anything", "https://gw.example/v1"), LISTED)
    assert (gateway.source, gateway.output, gateway.cached) == ("configured", 8e-6, 5e-7)
    assert gateway.where == 'prices."https://gw.example/v1"'


def test_the_list_then_loopback_then_unknown() -> None:
    cat = _catalogue()
    listed = prices_of(cat.resolve("openai/gpt-4.1-mini"), LISTED)
    assert (listed.source, listed.input) == ("listed", 1e-6)
    local = cat.resolve("openai/qwen", "http://127.0.0.1:11434/v1")
    assert prices_of(local, LISTED).source == "listed"  # a listed model at home keeps its price
    free = prices_of(local, UNLISTED)
    assert (free.source, free.input, free.output) == ("loopback", 0.0, 0.0)
    remote = prices_of(cat.resolve("openai/qwen", "http://10.0.0.5/v1"), UNLISTED)
    assert remote.source == "unknown" and not remote.known
    assert worst_case(remote, 1000, 100) is None
    off = _catalogue(free_loopback=False).resolve("openai/qwen", "http://127.0.0.1:11434/v1")
    assert prices_of(off, UNLISTED).source == "unknown"


def test_one_direction_set_takes_the_other_from_the_list_or_stays_unknown() -> None:
    cat = _catalogue(models={"half": {"model": "openai/gpt-x", "price_in": 3.0}})
    assert prices_of(cat.resolve("half"), LISTED).output == 2e-6
    assert prices_of(cat.resolve("half"), UNLISTED).source == "unknown"


def test_after_the_call_settings_then_reported_then_listed_then_unknown() -> None:
    cat = _catalogue(models={"fast": {"model": "openai/gpt-x", "price_in": 3.0, "price_out": 4.0}})
    configured = cat.resolve("fast")
    done = priced(_done(reported=0.5), configured, prices_of(configured, LISTED))
    assert (done.cost, done.cost_source) == (pytest.approx(0.0034), "configured")
    listed = cat.resolve("openai/gpt-4.1-mini")
    done = priced(_done(reported=0.5), listed, prices_of(listed, LISTED))
    assert (done.cost, done.cost_source) == (0.5, "reported")
    done = priced(_done(), listed, prices_of(listed, LISTED))
    assert (done.cost, done.cost_source) == (pytest.approx(0.0012), "listed")
    unknown = cat.resolve("openai/qwen", "http://10.0.0.5/v1")
    done = priced(_done(), unknown, prices_of(unknown, UNLISTED))
    assert (done.cost, done.cost_source) == (None, "unknown")
    done = priced(_done(reported=0.25), unknown, prices_of(unknown, UNLISTED))
    assert (done.cost, done.cost_source) == (0.25, "reported")
    local = cat.resolve("openai/qwen", "http://127.0.0.1:11434/v1")
    done = priced(_done(reported=0.25), local, prices_of(local, UNLISTED))
    assert (done.cost, done.cost_source) == (0.25, "reported")  # a local gateway that bills
    done = priced(_done(), local, prices_of(local, UNLISTED))
    assert (done.cost, done.cost_source) == (0.0, "configured")


def test_a_repository_cannot_set_prices_or_free_loopback() -> None:
    from kyros.settings import REPO_FORBIDDEN

    assert {"prices", "free_loopback"} <= REPO_FORBIDDEN
