"""Loop detection's shapes (RELIABILITY L6): one call repeated, or a short cycle of calls."""

from __future__ import annotations

from kyros.core.runs.loops import LOOP_LIMIT, MAX_CYCLE, cycle, describe, signature


def sig(name: str, **args: object) -> str:
    import json

    return signature(name, json.dumps(args))


A, B, C = sig("search", pattern="add"), sig("read_file", path="a.py"), sig("run_command", c="x")


def test_one_call_repeated_is_a_cycle_of_one() -> None:
    assert cycle([A] * (LOOP_LIMIT - 1)) == 0
    assert cycle([B, A, A, A]) == 1
    assert "search with the same arguments 3 times" in describe([A] * 3, 1)


def test_alternating_calls_are_a_cycle_of_two() -> None:
    assert cycle([A, B, A, B, A]) == 0  # two rounds and a half: not yet
    assert cycle([A, B] * LOOP_LIMIT) == 2
    assert cycle([C, A, B, A, B, A, B]) == 2
    assert "(search, read_file)" in describe([A, B] * 3, 2)


def test_longer_cycles_up_to_the_limit() -> None:
    assert cycle([A, B, C] * LOOP_LIMIT) == 3
    long = [sig("read_file", path=f"{i}.py") for i in range(MAX_CYCLE + 1)]
    assert cycle(long * LOOP_LIMIT) == 0  # longer cycles are left to the turn limits


def test_progress_between_rounds_is_no_loop() -> None:
    # The same two tools with other arguments each time: an agent at work.
    calls = [sig("read_file", path=f"{i}.py") if i % 2 else sig("search", p=i) for i in range(12)]
    assert cycle(calls) == 0


def test_argument_order_does_not_matter() -> None:
    assert signature("s", '{"a": 1, "b": 2}') == signature("s", '{"b": 2, "a": 1}')
    assert signature("s", "not json") == "s:not json"
