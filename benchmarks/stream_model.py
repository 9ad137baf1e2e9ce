"""A daemon plugin for the console benchmarks: a scripted model that streams for minutes.

Loaded with ``KYROS_PLUGINS=benchmarks.stream_model``, it adds no job kind: it makes
:data:`MODEL` answer through litellm's real streaming path (a ``CustomLLM``), :data:`CHUNK`
characters every :data:`DELAY` seconds, about 20 tokens a second like a hosted model; the
daemon writes them as ``model.delta`` events about ten times a second per run. The answer is a
valid plan, so a run that streams to its end succeeds.
"""

from __future__ import annotations

import json
from typing import Any

#: The model id runs ask for (what :func:`register_scripted` names it).
MODEL = "kyros-scripted-tui-stream/tui-stream"
CHUNK = 8
DELAY = 0.1
#: How long one answer streams.
STREAM_SECONDS = 150.0


def plan_text(seconds: float = STREAM_SECONDS) -> str:
    """A plan in JSON, indented as models write it, long enough to stream for ``seconds``."""
    wanted = int(seconds / DELAY * CHUNK)
    steps: list[dict[str, Any]] = []
    plan: dict[str, Any] = {"summary": "Change the importer step by step.", "steps": steps}
    while len(json.dumps(plan, indent=2)) < wanted:
        n = len(steps) + 1
        steps.append(
            {
                "title": f"Step {n}: read, change and test part {n} of the importer",
                "detail": f"Open importer/part_{n}.py, make the reader skip unreadable files "
                "with a warning instead of failing, and keep the order of the rest.",
                "files": [f"importer/part_{n}.py"],
                "tests": [f"tests/test_part_{n}.py"],
            }
        )
    plan["risks"] = ["Skipping files hides real errors: log each one."]
    return json.dumps(plan, indent=2)


def register(registry: Any) -> None:
    """The plugin hook: register the model (litellm is imported here, in the daemon)."""
    from kyros.core.ai.litellm_backend import ScriptedProvider, register_scripted

    text = plan_text()
    register_scripted(
        "tui-stream", ScriptedProvider(lambda _messages: text, chunk_chars=CHUNK, delay=DELAY)
    )
