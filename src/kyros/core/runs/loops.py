"""Loop detection for the agent loop: the same tool calls, in the same order, over and over.

An agent that is stuck either repeats one call (``read_file a.py`` three times) or alternates a
few (``read_file a.py``, ``run_command pytest``, ``read_file a.py``, ``run_command pytest`` …)
with nothing changing in between. Both are the same shape: the newest calls are one block of
:data:`MAX_CYCLE` calls or fewer, repeated :data:`LOOP_LIMIT` times in a row. A call's identity
is its tool and its arguments, canonicalised (key order does not matter).

Three repetitions, not two: an agent may well read a file, run the tests, fix something, then
read and test again; a third identical round with nothing in between is no longer progress.
"""

from __future__ import annotations

import json

#: The same block of calls this many times in a row halts the run (RELIABILITY L6).
LOOP_LIMIT = 3
#: The longest block looked for: A, B, C, D repeated is caught; longer cycles are rare, and a
#: longer block of identical calls is caught by the run's turn and tool-call limits anyway.
MAX_CYCLE = 4


def signature(name: str, raw: str) -> str:
    """A tool call's identity: its name and its JSON arguments with keys sorted."""
    try:
        canonical = json.dumps(json.loads(raw), sort_keys=True)
    except ValueError:
        canonical = raw
    return f"{name}:{canonical}"


def cycle(calls: list[str]) -> int:
    """The length of the shortest block that the end of ``calls`` repeats :data:`LOOP_LIMIT`
    times in a row (1 for one call repeated), or 0 when it repeats none."""
    for size in range(1, MAX_CYCLE + 1):
        span = size * LOOP_LIMIT
        if len(calls) < span:
            break
        tail = calls[-span:]
        block = tail[:size]
        if tail == block * LOOP_LIMIT:
            return size
    return 0


def describe(calls: list[str], size: int) -> str:
    """Why the run halts, in words: which tools, how many times."""
    names = [call.split(":", 1)[0] for call in calls[-size:]]
    if size == 1:
        return (
            f"loop detected: the agent called {names[0]} with the same arguments "
            f"{LOOP_LIMIT} times in a row"
        )
    return (
        f"loop detected: the agent repeated the same {size} tool calls "
        f"({', '.join(names)}) with the same arguments {LOOP_LIMIT} times in a row"
    )
