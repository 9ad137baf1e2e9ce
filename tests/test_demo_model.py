"""The scripted ``demo`` model's answers, checked by the same parsers and tools the runs use.

Each reply is fed to what kyros does with a real model's: a plan to ``parse_plan``, a verdict to
``parse_verdict``, tool calls to ``parse_arguments`` and a real :class:`Toolbox` on a temporary
workspace. The end-to-end runs are in test_demo_e2e.py.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from kyros.core.ai import demo, demo_agent
from kyros.core.runs.critic import INSTRUCTIONS, PASS_SCORE, parse_verdict
from kyros.core.runs.implement import SYSTEM_PROMPT
from kyros.core.runs.memory import SUMMARIZE_PROMPT
from kyros.core.runs.plan_output import parse_plan, plan_instructions
from kyros.core.tools.pathpolicy import PathPolicy
from kyros.core.tools.registry import Toolbox, parse_arguments

DIFF = """--- a/calc/__init__.py
+++ b/calc/__init__.py
@@ -1,3 +1,4 @@
 def add(a, b):
     \"\"\"The sum of a and b.\"\"\"
-    return a - b
+    # both operands
+    return a + b
--- /dev/null
+++ b/tests/test_more.py
@@ -0,0 +1 @@
+def test_more(): pass
"""


def _agent(task: str, steps: int, root: Path) -> tuple[list[dict[str, Any]], Any]:
    """Run ``steps`` turns of the demo agent on ``root`` through a real toolbox."""
    chat: list[dict[str, Any]] = [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": task},
    ]
    box = Toolbox(PathPolicy(root))
    answer: Any = None
    for _ in range(steps):
        answer = demo.reply(chat)
        if isinstance(answer, str):
            break
        calls = answer["tool_calls"]
        chat.append(
            {
                "role": "assistant",
                "content": answer["text"],
                "tool_calls": [
                    {
                        "id": c["id"],
                        "type": "function",
                        "function": {"name": c["name"], "arguments": c["arguments"]},
                    }
                    for c in calls
                ],
            }
        )
        for c in calls:
            result = asyncio.run(box.call(c["name"], parse_arguments(c["name"], c["arguments"])))
            chat.append({"role": "tool", "tool_call_id": c["id"], "content": result.output})
    return chat, answer


def test_each_request_gets_the_answer_of_its_kind() -> None:
    plan = demo.reply(
        [
            {"role": "system", "content": plan_instructions()},
            {"role": "user", "content": "## Goal\nadd a flag\n\n## README.md\n```\nhi\n```"},
        ]
    )
    assert isinstance(plan, str) and "scripted demo" in parse_plan(plan).summary
    review = demo.reply(
        [
            {"role": "system", "content": INSTRUCTIONS},
            {"role": "user", "content": f"## Goal\nfix add\n\n## Change\n```diff\n{DIFF}```"},
        ]
    )
    assert isinstance(review, str)
    verdict = parse_verdict(review)
    assert verdict.verdict == "pass" and verdict.score >= PASS_SCORE
    assert "+3 -1" in verdict.summary and "scripted demo" in verdict.summary
    first, second = verdict.findings
    assert (first.file, first.line) == ("calc/__init__.py", 3)  # the first added line
    assert second.file == "tests/test_more.py"
    summary = demo.reply(
        [
            {"role": "system", "content": SUMMARIZE_PROMPT},
            {"role": "user", "content": "[user]\n## Task\nx"},
        ]
    )
    assert isinstance(summary, str) and summary.startswith(demo.DEMO_BANNER)


def test_the_agent_writes_a_note_and_ends_with_a_scripted_summary(tmp_path: Path) -> None:
    (tmp_path / "main.c").write_text("int main(void) { return 0; }\n")
    chat, answer = _agent("## Task\nmake it \x1b]0;owned\x07faster", 10, tmp_path)
    assert isinstance(answer, str) and answer.startswith(demo.DEMO_BANNER)
    note = (tmp_path / demo_agent.NOTE).read_text()
    assert note.startswith("# kyros demo notes\n\n## make it faster\n")  # no escape kept
    assert "It saw 1 file(s)" in note
    assert (tmp_path / "main.c").read_text() == "int main(void) { return 0; }\n"
    # A resumed run (the same chat) asks for nothing again: the answer is the same.
    assert demo.reply(chat) == answer


def test_an_earlier_note_is_appended_to_and_a_long_one_left_alone(tmp_path: Path) -> None:
    _agent("## Task\nfirst", 10, tmp_path)
    _agent("## Task\nsecond", 10, tmp_path)
    note = (tmp_path / demo_agent.NOTE).read_text()
    assert note.count("# kyros demo notes") == 1
    assert note.index("## first") < note.index("## second")
    long = "x" * 100 + "\n"
    (tmp_path / demo_agent.NOTE).write_text(long * 3000)  # past read_file's 256 KiB
    _agent("## Task\nthird", 10, tmp_path)
    assert (tmp_path / demo_agent.NOTE).read_text() == long * 3000
    assert "## third" in (tmp_path / "KYROS-DEMO-2.md").read_text()


def test_whole_file_tells_a_whole_read_from_a_partial_one() -> None:
    assert demo_agent.whole_file("     1| a\n     2| b") == "a\nb\n"
    assert demo_agent.whole_file("KYROS-DEMO.md is empty") == ""
    assert demo_agent.whole_file("error: no such file: KYROS-DEMO.md") is None
    assert demo_agent.whole_file("     1| a\n[lines 1-1 of 9]") is None
    assert demo_agent.whole_file("     1| a [… line cut]") is None
    json.dumps(demo_agent.implement_step([]))  # the first step needs nothing from the chat
