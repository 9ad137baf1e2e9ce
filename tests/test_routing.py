"""Routing over real HTTP (RELIABILITY L1-L4): the fake OpenAI-compatible server injects the
faults, the real litellm backend and kyros's router handle them."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from kyros.core.ai.backend import Completion, ProviderError
from kyros.core.ai.litellm_backend import LiteLLMBackend
from kyros.core.ai.models import ResolvedModel
from kyros.core.ai.router import RoutePolicy, Router
from tests.support.fake_openai import FakeOpenAI, Reply, Unreachable

MESSAGES = [{"role": "user", "content": "hello"}]
#: Short deadlines, so stalls are found in a fraction of a second.
#: The connect deadline also covers litellm's own work before the request goes out, which is
#: ~1 s on a process's first call here: it gets more (connect stalls have their own test).
QUICK = RoutePolicy(
    connect=2.0,
    first_token=0.6,
    between_chunks=0.6,
    total=5.0,  # also bounds litellm's first-call work (~0.8-2 s under load)
    retry_after_max=5.0,
    retries=1,
    cooldown=60.0,
    backoff=0.05,
)
SLACK = 1.0  # scheduling and HTTP overhead on a busy 2-core machine


class Ledger:
    """Records what the router settles (the ledger's own tests are in test_budgets.py)."""

    capped = False

    def __init__(self) -> None:
        self.rows: list[tuple[str, str]] = []

    async def reserve(self, model: ResolvedModel, worst: float) -> object:
        return None

    async def settle(
        self,
        ticket: object,
        model: ResolvedModel,
        completion: Completion | None,
        outcome: str,
        error: str | None,
    ) -> None:
        self.rows.append((model.name, outcome))


class Events:
    def __init__(self) -> None:
        self.items: list[tuple[str, dict[str, Any]]] = []
        self.at: list[float] = []  # time.monotonic() of each

    async def __call__(self, kind: str, data: dict[str, Any]) -> None:
        self.items.append((kind, data))
        self.at.append(time.monotonic())

    def kinds(self) -> list[str]:
        return [k for k, _ in self.items]


def model(srv: FakeOpenAI, name: str) -> ResolvedModel:
    return ResolvedModel(
        name=name,
        litellm_model=f"openai/{name}",
        provider="openai",
        api_base=srv.url,
        api_key="sk-test-routing-key-000000",
    )


@pytest.fixture
async def backend() -> AsyncIterator[LiteLLMBackend]:
    backend = LiteLLMBackend()
    yield backend
    await backend.aclose()


@pytest.fixture
def second() -> Any:
    with FakeOpenAI() as srv:
        yield srv


async def _drained(srv: FakeOpenAI, timeout: float = 3.0) -> int:
    deadline = time.monotonic() + timeout
    while srv.open_connections and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return srv.open_connections


# --- L1: stalls ------------------------------------------------------------------------------

STALLS = {
    # Accepted, then silence: the server is thinking, the connection was made.
    "no first byte": (Reply(text="late", delay_before_headers=30), "first_token", 0.6),
    "keep-alives without content": (
        Reply(text="late", delay_first_chunk=30, keepalive_comments=True),
        "first_token",
        0.6,
    ),
    "silence after the first chunk": (
        Reply(text="a long answer that stops", chunk_size=4, stall_after_chunks=2),
        "between_chunks",
        0.6,
    ),
    "slow drip": (
        Reply(text="x" * 400, chunk_size=1, delay_between_chunks=0.1),
        "total",
        QUICK.total,
    ),
}


@pytest.mark.parametrize("case", STALLS)
async def test_l1_a_stall_aborts_within_its_deadline_classified_by_phase(
    case: str, fake_openai: FakeOpenAI, backend: LiteLLMBackend
) -> None:
    reply, phase, deadline = STALLS[case]
    fake_openai.enqueue(reply, reply)
    router, ledger = Router(QUICK), Ledger()
    with pytest.raises(ProviderError) as caught:
        await router.complete([model(fake_openai, "stalls")], MESSAGES, backend, ledger)
    # From the request's arrival: litellm's work before the first request goes out (~1 s on a
    # process's first call) is not the provider's stall.
    elapsed = time.monotonic() - fake_openai.requests[0].at
    assert caught.value.kind == "timeout" and caught.value.phase == phase, caught.value.message
    assert phase.replace("_", " ") in caught.value.message
    # A timeout is retried only when nothing else could answer: two attempts at most, within
    # the call's total deadline (which a slow drip uses up in its first attempt).
    attempts = 1 if phase == "total" else 2
    assert len(fake_openai.requests) == attempts
    assert ledger.rows == [("stalls", f"timeout_{phase}")] * attempts
    assert elapsed < attempts * (deadline + QUICK.backoff) + SLACK, elapsed
    assert await _drained(fake_openai) == 0  # the abandoned streams gave their connections back


async def test_l1_a_stalled_model_falls_back_at_once(
    fake_openai: FakeOpenAI, second: FakeOpenAI, backend: LiteLLMBackend
) -> None:
    fake_openai.enqueue(Reply(text="never", delay_first_chunk=30))
    second.enqueue(Reply(text="from the fallback"))
    events = Events()
    started = time.monotonic()
    done = await Router(QUICK).complete(
        [model(fake_openai, "a"), model(second, "b")],
        MESSAGES,
        backend,
        Ledger(),
        on_event=events,
    )
    assert done.text == "from the fallback"
    assert time.monotonic() - started < QUICK.first_token + SLACK
    assert len(fake_openai.requests) == 1  # no second stall paid for
    (kind, data), *_ = events.items
    assert kind == "model.fallback" and data["outcome"] == "timeout_first_token"
    assert (data["from"], data["to"]) == ("a", "b")


async def test_calls_in_a_row_reuse_one_provider_client(
    fake_openai: FakeOpenAI, backend: LiteLLMBackend
) -> None:
    """Each call has less of its deadline left than the one before; the provider client must
    not change with it. litellm keeps one client per set of options, so a timeout that followed
    the time left built a new client (~1 ms) for every call."""
    import litellm

    clients = litellm.in_memory_llm_clients_cache.cache_dict
    clock = iter(range(0, 10_000, 7))
    router = Router(QUICK, clock=lambda: float(next(clock)) / 1000)
    chain = [model(fake_openai, "a")]
    assert (await router.complete(chain, MESSAGES, backend, Ledger())).text == "ok"
    after_first = len(clients)
    for n in range(4):
        assert (await router.complete(chain, MESSAGES, backend, Ledger())).text == "ok", n
    assert len(fake_openai.requests) == 5
    assert len(clients) == after_first


# --- deadlines by phase, and an end to the whole call -------------------------------------

#: The deadlines a user sets for a provider that must answer fast: the connect deadline is ten
#: times the first-token one, so a call that waited on the wrong one would show.
PHASED = RoutePolicy(
    connect=30.0,
    first_token=3.0,
    between_chunks=3.0,
    total=60.0,
    retries=1,
    cooldown=60.0,
    backoff=0.05,
)


@pytest.mark.parametrize("streaming", [True, False], ids=["streaming", "not-streaming"])
async def test_l1_a_server_that_accepts_and_never_answers_is_left_at_the_first_token_deadline(
    streaming: bool, fake_openai: FakeOpenAI, second: FakeOpenAI, backend: LiteLLMBackend
) -> None:
    fake_openai.enqueue(Reply.silent())
    second.enqueue(Reply(text="from the fallback"))
    events, deltas = Events(), []

    async def on_delta(text: str) -> None:
        deltas.append(text)

    done = await Router(PHASED).complete(
        [model(fake_openai, "a"), model(second, "b")],
        MESSAGES,
        backend,
        Ledger(),
        on_delta=on_delta if streaming else None,
        on_event=events,
    )
    assert done.text == "from the fallback"
    assert "".join(deltas) == ("from the fallback" if streaming else "")
    # Given up on at the first-token deadline (3 s) after the server had the request, not at
    # the connect one (30 s); the fallback was asked at once.
    waited = events.at[0] - fake_openai.requests[0].at
    assert PHASED.first_token - 0.1 < waited < PHASED.first_token + SLACK, waited
    assert second.requests[0].at - events.at[0] < SLACK
    (kind, data), *_ = events.items
    assert kind == "model.fallback" and data["outcome"] == "timeout_first_token"
    assert len(fake_openai.requests) == 1 and len(second.requests) == 1


async def test_l1_a_connection_that_never_completes_is_left_at_the_connect_deadline(
    second: FakeOpenAI, backend: LiteLLMBackend
) -> None:
    policy = RoutePolicy(connect=1.0, first_token=30.0, between_chunks=30.0, total=60.0)
    second.enqueue(Reply(text="from the fallback"))
    events = Events()
    with Unreachable() as nowhere:
        dead = ResolvedModel(
            name="nowhere",
            litellm_model="openai/nowhere",
            provider="openai",
            api_base=nowhere.url,
            api_key="sk-test-routing-key-000000",
        )
        started = time.monotonic()
        done = await Router(policy).complete(
            [dead, model(second, "b")], MESSAGES, backend, Ledger(), on_event=events
        )
        elapsed = time.monotonic() - started
    assert done.text == "from the fallback"
    assert policy.connect - 0.1 < elapsed < policy.connect + SLACK, (elapsed, events.items)
    (kind, data), *_ = events.items
    assert kind == "model.fallback" and data["outcome"] == "timeout_connect", events.items


async def test_two_stalling_models_are_walked_a_bounded_number_of_times(
    fake_openai: FakeOpenAI, second: FakeOpenAI, backend: LiteLLMBackend
) -> None:
    """a and b both stall, and each rests for less time than a stall lasts: each is tried
    twice (``rounds``), then the call fails with the list of what it tried."""
    policy = RoutePolicy(
        connect=30.0, first_token=1.0, between_chunks=1.0, total=60.0, cooldown=0.5, rounds=2
    )
    fake_openai.default = second.default = Reply.silent()
    ledger = Ledger()
    started = time.monotonic()
    with pytest.raises(ProviderError) as caught:
        await Router(policy).complete(
            [model(fake_openai, "a"), model(second, "b")], MESSAGES, backend, ledger
        )
    elapsed = time.monotonic() - started
    assert len(fake_openai.requests) == 2 and len(second.requests) == 2
    attempts = caught.value.detail["attempts"]
    assert [(t["model"], t["phase"]) for t in attempts] == [
        ("a", "first_token"),
        ("b", "first_token"),
    ] * 2
    assert [t["server"] for t in attempts] == [fake_openai.url, second.url] * 2
    assert all("first token deadline" in t["error"] for t in attempts)
    assert "4 attempts" in caught.value.message and f"b at {second.url}" in caught.value.message
    assert ledger.rows == [("a", "timeout_first_token"), ("b", "timeout_first_token")] * 2
    assert elapsed < 4 * policy.first_token + SLACK + 1, elapsed


async def test_the_whole_call_ends_within_its_total_deadline(
    fake_openai: FakeOpenAI, second: FakeOpenAI, backend: LiteLLMBackend
) -> None:
    """Many rounds allowed, short rests: the total deadline ends the call, attempts listed."""
    policy = RoutePolicy(
        connect=30.0, first_token=1.0, between_chunks=1.0, total=2.5, cooldown=0.1, rounds=10
    )
    fake_openai.default = second.default = Reply.silent()
    started = time.monotonic()
    with pytest.raises(ProviderError) as caught:
        await Router(policy).complete(
            [model(fake_openai, "a"), model(second, "b")], MESSAGES, backend, Ledger()
        )
    elapsed = time.monotonic() - started
    assert policy.total - 0.1 < elapsed < policy.total + SLACK, elapsed
    assert caught.value.kind == "timeout" and caught.value.phase == "total"
    attempts = caught.value.detail["attempts"]
    # a and b for a second each, then a third attempt cut short by what was left of 2.5 s.
    assert [t["model"] for t in attempts] == ["a", "b", "a"]
    assert attempts[-1]["phase"] == "total" and attempts[-1]["seconds"] < 1.0
    assert len(fake_openai.requests) + len(second.requests) == 3


# --- L2: a tool call cut mid-stream ----------------------------------------------------------

CALL = {
    "id": "call_1",
    "name": "write_file",
    "arguments": json.dumps({"path": "notes/todo.txt", "content": "line one\nline two\n" * 4}),
}


async def test_l2_a_cut_tool_call_is_never_returned_at_any_byte(
    fake_openai: FakeOpenAI, backend: LiteLLMBackend
) -> None:
    full = Reply(text="Writing the file.", tool_calls=[CALL], chunk_size=16)
    rng = random.Random(20261126)
    cuts = sorted(rng.sample(range(1, 3000), 25))
    router = Router(QUICK)
    for cut in cuts:
        fake_openai.enqueue(
            Reply(text=full.text, tool_calls=[CALL], chunk_size=16, cut_after_bytes=cut),
            full,
        )
        events, deltas = Events(), []

        async def on_delta(text: str) -> None:
            deltas.append(text)

        done = await router.complete(
            [model(fake_openai, "cuts")],
            MESSAGES,
            backend,
            Ledger(),
            tools=[{"type": "function", "function": {"name": "write_file"}}],
            on_delta=on_delta,
            on_event=events,
        )
        # Whatever was cut, only a whole call comes back, and the text once.
        assert [(c.name, c.arguments) for c in done.tool_calls] == [
            (CALL["name"], CALL["arguments"])
        ]
        assert done.text == full.text
        retried = [d for k, d in events.items if k == "model.retry"]
        if retried:
            # What a follower keeps: the text after the last discard notice.
            assert retried[-1]["outcome"] == "cut"
            kept = "".join(deltas)[sum(len(d) for d in deltas) - len(full.text) :]
            assert kept == full.text
            assert retried[-1]["discard"] == (sum(len(d) for d in deltas) > len(full.text))
        else:
            assert "".join(deltas) == full.text  # cut after the end: nothing lost, nothing twice
        # A cut after the end leaves the second reply unused: the next case starts clean.
        fake_openai.clear_queue()


# --- L3: Retry-After --------------------------------------------------------------------------


async def test_l3_retry_after_is_honoured_in_one_layer(
    fake_openai: FakeOpenAI, backend: LiteLLMBackend
) -> None:
    fake_openai.enqueue(Reply.error(429, headers={"Retry-After": "1"}), Reply(text="ok now"))
    events = Events()
    done = await Router(QUICK).complete(
        [model(fake_openai, "limited")], MESSAGES, backend, Ledger(), on_event=events
    )
    assert done.text == "ok now"
    first, again = fake_openai.requests
    assert again.at - first.at >= 1.0  # waited as told
    assert len(fake_openai.requests) == 2  # and only kyros retried: no SDK retry underneath
    assert events.items[0][0] == "model.retry" and events.items[0][1]["wait"] == 1.0


async def test_l3_an_hour_long_retry_after_fails_fast_without_a_fallback(
    fake_openai: FakeOpenAI, backend: LiteLLMBackend
) -> None:
    fake_openai.enqueue(Reply.error(429, headers={"Retry-After": "3600"}))
    router = Router(QUICK)
    started = time.monotonic()
    with pytest.raises(ProviderError) as caught:
        await router.complete([model(fake_openai, "limited")], MESSAGES, backend, Ledger())
    assert time.monotonic() - started < SLACK
    assert caught.value.kind == "rate_limit" and "3600s" in caught.value.message
    assert len(fake_openai.requests) == 1
    # Resting now: the next call fails at once without reaching the provider.
    with pytest.raises(ProviderError) as again:
        await router.complete([model(fake_openai, "limited")], MESSAGES, backend, Ledger())
    assert again.value.kind == "cooldown" and len(fake_openai.requests) == 1


async def test_l3_an_hour_long_retry_after_falls_back(
    fake_openai: FakeOpenAI, second: FakeOpenAI, backend: LiteLLMBackend
) -> None:
    fake_openai.enqueue(Reply.error(429, headers={"Retry-After": "3600"}))
    second.default = Reply(text="fallback answer")
    started = time.monotonic()
    done = await Router(QUICK).complete(
        [model(fake_openai, "a"), model(second, "b")], MESSAGES, backend, Ledger()
    )
    assert done.text == "fallback answer" and time.monotonic() - started < SLACK


# --- L4: cooldown -----------------------------------------------------------------------------


async def test_l4_a_failing_deployment_gets_no_request_while_it_rests(
    fake_openai: FakeOpenAI, second: FakeOpenAI, backend: LiteLLMBackend
) -> None:
    fake_openai.default = Reply.error(500, "primary is down")
    second.default = Reply(text="streamed by the fallback", chunk_size=4)
    policy = RoutePolicy(**{**QUICK.__dict__, "cooldown": 1.5})
    router, ledger = Router(policy), Ledger()
    chain = [model(fake_openai, "a"), model(second, "b")]
    deltas: list[str] = []

    async def on_delta(text: str) -> None:
        deltas.append(text)

    first = await router.complete(chain, MESSAGES, backend, ledger, on_delta=on_delta)
    assert first.text == "streamed by the fallback" and "".join(deltas) == first.text
    assert len(fake_openai.requests) == 2  # tried and retried once, then it rests
    for _ in range(5):
        await router.complete(chain, MESSAGES, backend, ledger)
    assert len(fake_openai.requests) == 2  # not one request while it rests
    assert ledger.rows == [("a", "provider")] * 2 + [("b", "ok")] * 6
    await asyncio.sleep(1.6)
    await router.complete(chain, MESSAGES, backend, ledger)
    assert len(fake_openai.requests) == 4  # rested: tried again (and failed again)


# --- memory: a long answer --------------------------------------------------------------------


async def test_a_long_stream_is_not_kept_chunk_by_chunk(backend: LiteLLMBackend) -> None:
    """litellm keeps every chunk of a stream for its own logging (~3.5 KB each); kyros lets it
    keep the last few, so a long answer costs the daemon its text, not thousands of objects."""
    import gc

    from litellm.types.utils import ModelResponseStream

    alive: list[int] = []
    deltas = 0

    async def on_delta(delta: str) -> None:
        nonlocal deltas
        deltas += 1
        if deltas == 2500:  # late in the answer: what is held now grew with it, or did not
            alive.append(sum(isinstance(o, ModelResponseStream) for o in gc.get_objects()))

    text = "".join(f"w{i:05d} " for i in range(3000))  # 3,000 chunks of 8 characters
    with FakeOpenAI(default=Reply(text=text, chunk_size=8, completion_tokens=4321)) as srv:
        request = Router()._request(model(srv, "long"), MESSAGES, None, None, 900.0)
        completion = await backend.complete(request, on_delta)
    assert completion.text == text and completion.tokens_out == 4321  # nothing lost on the way
    assert alive and alive[0] < 100, f"{alive[0]} chunks held 2,500 chunks into the answer"
