"""The ``demo`` model: scripted replies so a user without any key sees the whole flow.

Every reply says plainly that it is a scripted demo and not the work of a model.
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


def _last_user(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user" and isinstance(message.get("content"), str):
            return str(message["content"])
    return ""


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
