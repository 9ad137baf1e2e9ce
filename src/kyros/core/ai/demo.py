"""The ``demo`` model: scripted replies so a user without any key sees the whole flow.

Every reply says plainly that it is a scripted demo and not the work of a model. One function,
:func:`reply`, answers every request kyros makes, told apart by what the request asks:

- a critic's review (a ``## Change`` diff in the prompt): a valid verdict that passes;
- a summary of a long conversation (memory compaction);
- an implement run's agent loop (its ``## Task``): real tool calls, one step per turn, that add
  a note file in the run's worktree (:mod:`kyros.core.ai.demo_agent`);
- anything else, a plan built from the goal and the files kyros selected.

Replies depend only on the messages, so a demo run is the same every time and, resumed after a
crash, goes on where it stopped.
"""

from __future__ import annotations

import json
import re
from typing import Any

DEMO_MODEL = "demo"
DEMO_BANNER = "[scripted demo — no AI model was called]"

# A file block in the plan prompt: "## path/to/file.py" then a code fence.
_FILE_HEADER = re.compile(r"^## (\S+?)(?: \(truncated\))?\n`{3,}", re.MULTILINE)
_GOAL = re.compile(r"^## Goal\n(.+?)(?:\n## |\Z)", re.MULTILINE | re.DOTALL)
#: How a critic's prompt carries the change under review (see kyros.core.runs.critic).
CHANGE_HEADER = "## Change\n```diff\n"
#: How an implement run states its task (see kyros.core.runs.implement).
TASK_HEADER = "## Task\n"
#: The first words of the compaction prompt (see kyros.core.runs.memory).
SUMMARY_MARK = "Summarize the conversation so far"


def _last_user(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user" and isinstance(message.get("content"), str):
            return str(message["content"])
    return ""


def _texts(messages: list[dict[str, Any]], role: str) -> list[str]:
    return [
        str(m["content"])
        for m in messages
        if m.get("role") == role and isinstance(m.get("content"), str)
    ]


def reply(messages: list[dict[str, Any]]) -> str | dict[str, Any]:
    """The demo's answer to any request: a review, a summary, an agent's step, or a plan."""
    # Imported here: demo_agent builds on this module's names (a cycle at import time).
    from kyros.core.ai import demo_agent

    users = _texts(messages, "user")
    if any(CHANGE_HEADER in text for text in users):
        return demo_agent.review_reply(messages)
    if any(text.startswith(SUMMARY_MARK) for text in _texts(messages, "system")):
        return f"{DEMO_BANNER} The conversation so far: a scripted demo run, no decisions taken."
    if any(text.startswith(TASK_HEADER) for text in users) or any(
        m.get("role") == "tool" for m in messages
    ):
        return demo_agent.implement_step(messages)
    return plan_reply(messages)


def plan_reply(messages: list[dict[str, Any]]) -> str:
    """A valid plan (JSON) built from the goal and the files named in the prompt."""
    prompt = "\n".join(
        str(m.get("content", "")) for m in messages if isinstance(m.get("content"), str)
    )
    goal_match = _GOAL.search(prompt)
    goal = (goal_match.group(1).strip() if goal_match else _last_user(messages).strip())[:200]
    files = list(dict.fromkeys(_FILE_HEADER.findall(prompt)))[:3] or ["README.md"]
    tests = [f for f in files if "test" in f] or ["tests/"]
    plan = {
        "summary": f"{DEMO_BANNER} A plan shaped like a real one for: {goal}. "
        "Configure a model (see `kyros run plan --help`) for real advice.",
        "steps": [
            {
                "title": "Read the code the goal touches",
                "detail": "Start from the most relevant files kyros found.",
                "files": files,
                "tests": [],
            },
            {
                "title": "Make the change",
                "detail": f"Implement: {goal}",
                "files": files[:1],
                "tests": [],
            },
            {
                "title": "Cover it with a test",
                "detail": "Add a test that fails before the change and passes after.",
                "files": tests,
                "tests": tests,
            },
        ],
        "risks": [f"{DEMO_BANNER} This plan was not written by a model."],
    }
    return json.dumps(plan, indent=2, ensure_ascii=False)
