"""`kyros models list|show|test` and `/v1/models`: the catalogue as the daemon sees it, and a test
call to one model — end to end over a real daemon and the fake OpenAI-compatible server, and the
probe's ledger rows on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from kyros.core.ai import probe
from kyros.core.ai.backend import ChatRequest, Completion, ModelInfo, OnDelta, ProviderError
from kyros.core.ai.catalogue import Catalogue
from kyros.core.ai.router import Router
from kyros.core.store import usage as usage_repo
from kyros.errors import ModelNotConfigured, NotFound
from kyros.settings.model import ModelSpec, RoleSpec, Settings
from tests.conftest import BACKENDS, FAST_QUEUE, Daemon, database, kyros_env, start_daemon, xdg_dirs
from tests.support.fake_openai import FakeOpenAI, Reply

#: Never a real key, and not key-shaped: only kyros's knowledge of it can hide it.
SENTINEL = "sentinel-provider-key-5c81e0d2"
PRICE_IN, PRICE_OUT = 1.0, 2.0


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as srv:
        yield srv


@pytest.fixture(scope="module", params=BACKENDS)
def models_daemon(request: pytest.FixtureRequest, fake: FakeOpenAI) -> Iterator[Daemon]:
    """A daemon whose catalogue has `fast` (the fake server, priced), `flaky` (the same server,
    another deployment), `other` (an Anthropic model without a key) and a plan role."""
    catalogue = {
        "fast": {
            "model": "openai/fake-small",
            "api_base": fake.url,
            "price_in": PRICE_IN,
            "price_out": PRICE_OUT,
            "max_output": 100,
        },
        "flaky": {"model": "openai/fake-flaky", "api_base": fake.url},
        "other": {"model": "anthropic/claude-nokey"},
    }
    roles = {"plan": {"model": "fast", "fallbacks": ["other"]}}
    with xdg_dirs() as xdg, database(request.param, xdg) as url:
        env = kyros_env(
            xdg,
            KYROS_DATABASE_URL=url,
            KYROS_MODELS=json.dumps(catalogue),
            KYROS_ROLES=json.dumps(roles),
            OPENAI_API_KEY=SENTINEL,
            **FAST_QUEUE,
        )
        d = start_daemon(env)
        try:
            yield d
        finally:
            d.stop()
            assert SENTINEL not in d.log.read_text(errors="replace")


def cli(d: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    out = d.cli(*args)
    assert SENTINEL not in out.stdout and SENTINEL not in out.stderr
    return out


def by_name(listing: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in listing["models"]}


e2e = pytest.mark.e2e


@e2e
def test_list_shows_aliases_roles_prices_and_no_key(
    models_daemon: Daemon, fake: FakeOpenAI
) -> None:
    out = cli(models_daemon, "models", "list", "--json")
    assert out.returncode == 0, out.stderr
    listing = json.loads(out.stdout)
    models = by_name(listing)
    fast = models["fast"]
    assert fast["model"] == "openai/fake-small" and fast["provider"] == "openai"
    assert fast["api_base"] == fake.url and fast["available"] is True
    assert (fast["price_in"], fast["price_out"], fast["max_output"]) == (PRICE_IN, PRICE_OUT, 100)
    assert fast["roles"] == ["plan"] and fast["key"] == "OPENAI_API_KEY"
    assert fast["cooldown"] is None
    other = models["other"]
    assert other["available"] is False and "anthropic" in other["problem"]
    assert other["roles"] == ["plan fallback"]
    # Detected from the key, priced from litellm's list; the demo is always there.
    detected = models["openai/gpt-4.1-mini"]
    assert detected["source"] == "detected from OPENAI_API_KEY"
    assert detected["price_in"] is not None and detected["context_window"]
    assert models["demo"]["available"] is True
    assert listing["roles"]["plan"] == ["fast", "other"]
    assert listing["roles"]["implement"] == ["openai/gpt-4.1-mini"]

    table = cli(models_daemon, "models", "list")
    assert table.returncode == 0, table.stderr
    assert "fast" in table.stdout and "openai/fake-small" in table.stdout
    assert "fast → other (unavailable)" in table.stdout


@e2e
def test_show_one_model_also_by_litellm_id(models_daemon: Daemon, fake: FakeOpenAI) -> None:
    out = cli(models_daemon, "models", "show", "fast", "--json")
    assert out.returncode == 0, out.stderr
    entry = json.loads(out.stdout)
    assert entry["name"] == "fast" and entry["api_base"] == fake.url
    assert (entry["price_in"], entry["price_out"]) == (PRICE_IN, PRICE_OUT)

    text = cli(models_daemon, "models", "show", "fast")
    assert text.returncode == 0, text.stderr
    assert "openai/fake-small" in text.stdout and "OPENAI_API_KEY" in text.stdout

    # A name with a slash travels as the rest of the path.
    with models_daemon.client() as c:
        detected = c.model("openai/gpt-4.1-mini")
    assert detected["name"] == "openai/gpt-4.1-mini"

    missing = cli(models_daemon, "models", "show", "nosuch")
    assert missing.returncode == 2
    assert "no model named 'nosuch'" in missing.stderr


@e2e
def test_show_prints_each_price_and_where_it_comes_from(models_daemon: Daemon) -> None:
    """A configured, a listed, a loopback and an unknown model: price and source, in text and
    --json alike; the unknown one with the settings line that would price it."""
    cases = {
        "fast": ("configured", "[models.fast]", PRICE_IN, PRICE_OUT),
        "openai/gpt-4.1-mini": ("listed", "litellm's price list", 0.4, 1.6),
        "flaky": ("configured", "loopback api_base", 0.0, 0.0),
        "openai/kyros-mystery-model": (
            "unknown",
            'prices."openai/kyros-mystery-model"',
            None,
            None,
        ),
    }
    # Prices come with litellm's list, which a busy machine takes a while to load.
    deadline = time.monotonic() + 120
    with models_daemon.client() as c:
        while c.ready()["checks"]["ai"]["detail"] != "loaded" and time.monotonic() < deadline:
            time.sleep(0.2)
    for name, (source, detail, price_in, price_out) in cases.items():
        out = cli(models_daemon, "models", "show", name, "--json")
        assert out.returncode == 0, out.stderr
        entry = json.loads(out.stdout)
        assert entry["price_source"] == source, entry
        assert detail in entry["price_detail"], entry
        assert (entry["price_in"], entry["price_out"]) == (price_in, price_out)
        text = cli(models_daemon, "models", "show", name)
        assert text.returncode == 0, text.stderr
        line = next(ln for ln in text.stdout.splitlines() if ln.startswith("price_source"))
        assert source in line and detail in line
        price = next(ln for ln in text.stdout.splitlines() if ln.startswith("price_in"))
        assert ("-" if price_in is None else f"${price_in:g}") in price
    listing = by_name(json.loads(cli(models_daemon, "models", "list", "--json").stdout))
    assert listing["fast"]["price_source"] == "configured"
    assert listing["openai/gpt-4.1-mini"]["price_source"] == "listed"


@e2e
def test_test_call_reports_latency_tokens_and_catalogue_cost(
    models_daemon: Daemon, fake: FakeOpenAI
) -> None:
    fake.enqueue(Reply(text="ok", prompt_tokens=1000, completion_tokens=500))
    out = cli(models_daemon, "models", "test", "fast", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    expected = (1000 * PRICE_IN + 500 * PRICE_OUT) / 1_000_000
    assert result["ok"] is True and result["error"] is None
    assert (result["tokens_in"], result["tokens_out"]) == (1000, 500)
    assert result["cost"] == pytest.approx(expected)
    assert result["latency_ms"] > 0 and result["reply"] == "ok"
    request = fake.requests[-1]
    assert request.body["model"] == "fake-small"
    assert request.body["messages"] == [{"role": "user", "content": probe.PROMPT}]

    fake.enqueue(Reply(text="ok", prompt_tokens=1000, completion_tokens=500))
    text = cli(models_daemon, "models", "test", "fast")
    assert text.returncode == 0, text.stderr
    assert " ms" in text.stdout and "1,000 in, 500 out" in text.stdout
    assert f"${expected:.6f}" in text.stdout and "reply      ok" in text.stdout

    with models_daemon.client() as c:
        calls = [x for x in c.usage_calls(limit=50) if x["role"] == "test" and x["model"] == "fast"]
    assert len(calls) >= 2
    call = calls[0]
    assert call["run_id"] is None and call["agent"] is None and call["project"] is None
    assert call["outcome"] == "ok" and call["provider"] == "openai"
    assert (call["tokens_in"], call["tokens_out"]) == (1000, 500)
    assert call["cost"] == pytest.approx(expected)


@e2e
def test_auth_failure_exits_1_in_words_and_is_redacted(
    models_daemon: Daemon, fake: FakeOpenAI
) -> None:
    fake.enqueue(Reply.error(401, f"Incorrect API key provided: {SENTINEL}"))
    out = cli(models_daemon, "models", "test", "fast")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "FAILED: authentication failed" in out.stdout
    assert "rejected the credentials" in out.stdout
    assert fake.requests[-1].headers["authorization"] == f"Bearer {SENTINEL}"  # it was sent

    fake.enqueue(Reply.error(401))
    as_json = cli(models_daemon, "models", "test", "fast", "--json")
    assert as_json.returncode == 1
    result = json.loads(as_json.stdout)
    assert result["ok"] is False and result["error"]["kind"] == "auth"

    with models_daemon.client() as c:
        calls = [x for x in c.usage_calls(limit=50) if x["role"] == "test"]
    failed = [x for x in calls if x["outcome"] == "auth"]
    assert failed and all(SENTINEL not in (x["error"] or "") for x in calls)
    assert "***" in "".join(x["error"] or "" for x in failed)


@e2e
def test_a_rate_limited_model_rests_and_the_list_shows_it(
    models_daemon: Daemon, fake: FakeOpenAI
) -> None:
    fake.enqueue(Reply.error(429, headers={"Retry-After": "3600"}))
    out = cli(models_daemon, "models", "test", "flaky")
    assert out.returncode == 1
    assert "rate-limited" in out.stdout
    cooldown = by_name(json.loads(cli(models_daemon, "models", "list", "--json").stdout))["flaky"][
        "cooldown"
    ]
    assert cooldown["reason"] == "rate_limit" and 3000 < cooldown["seconds"] <= 3600
    # While it rests, a test says so without calling the provider.
    sent = len(fake.requests)
    again = cli(models_daemon, "models", "test", "flaky")
    assert again.returncode == 1 and "resting" in again.stdout
    assert len(fake.requests) == sent


@e2e
def test_unknown_or_keyless_model_exits_2(models_daemon: Daemon) -> None:
    unknown = cli(models_daemon, "models", "test", "nosuch")
    assert unknown.returncode == 2
    assert "no model named 'nosuch'" in unknown.stderr
    keyless = cli(models_daemon, "models", "test", "other")
    assert keyless.returncode == 2
    assert "needs a anthropic key" in keyless.stderr


@e2e
def test_demo_answers_without_a_provider(models_daemon: Daemon) -> None:
    out = cli(models_daemon, "models", "test", "demo", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["ok"] is True and result["provider"] == "demo" and result["reply"]


# --- the probe on each store backend -----------------------------------------------------------


class StubBackend:
    """Answers from a script: a Completion, or a ProviderError to raise."""

    def __init__(self, *script: Completion | ProviderError) -> None:
        self.script = list(script)
        self.requests: list[ChatRequest] = []

    async def complete(self, request: ChatRequest, on_delta: OnDelta | None = None) -> Completion:
        self.requests.append(request)
        step = self.script.pop(0)
        if isinstance(step, ProviderError):
            raise step
        return step

    def context_window(self, model: str) -> int:
        return 8192

    def model_info(self, model: str) -> ModelInfo:
        return ModelInfo()


async def test_probe_writes_one_ledger_row_per_call(core: Any) -> None:
    settings = Settings(
        models={
            "stub": ModelSpec(
                model="openai/stub", api_base="http://127.0.0.1:9/v1", price_in=1, price_out=2
            ),
            "nokey": ModelSpec(model="anthropic/claude-nokey"),
        },
        roles={"plan": RoleSpec(model="stub", fallbacks=["nokey"])},
    )
    catalogue = Catalogue(settings, lambda: {"OPENAI_API_KEY": SENTINEL})
    backend = StubBackend(
        Completion("ok", "openai/stub", 1000, 500, 0, 0.0, 12.5),
        ProviderError(f"the provider rejected the credentials: {SENTINEL}", kind="auth"),
    )
    router = Router()
    good = await probe.test_model(catalogue, router, backend, core.store, "stub")
    assert good["ok"] and good["cost"] == pytest.approx(0.002) and good["latency_ms"] == 12.5
    assert backend.requests[0].api_key == SENTINEL
    bad = await probe.test_model(catalogue, router, backend, core.store, "stub")
    assert not bad["ok"] and bad["error"]["kind"] == "auth"
    assert SENTINEL not in bad["error"]["message"]
    assert len(backend.requests) == 2  # no retry, no fallback

    with pytest.raises(NotFound):
        await probe.test_model(catalogue, router, backend, core.store, "stbu")
    with pytest.raises(ModelNotConfigured):
        await probe.test_model(catalogue, router, backend, core.store, "nokey")

    async with core.store.read() as conn:
        rows = await usage_repo.recent(conn, limit=10)
    assert [r["outcome"] for r in rows] == ["auth", "ok"]
    for row in rows:
        assert (row["run_id"], row["agent"], row["project"]) == (None, None, None)
        assert (row["role"], row["model"], row["provider"]) == ("test", "stub", "openai")
    assert rows[1]["cost"] == pytest.approx(0.002) and rows[1]["tokens_out"] == 500
    assert rows[0]["error"] and SENTINEL not in rows[0]["error"]
