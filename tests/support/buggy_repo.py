"""A tiny Python package with a failing test, in a real git repository, and the scripted model
turns (tool calls) that fix it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support.fake_openai import Reply

CALC = 'def add(a, b):\n    """The sum of a and b."""\n    return a - b\n'
TEST = "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"
FIX = """--- a/calc/__init__.py
+++ b/calc/__init__.py
@@ -1,3 +1,3 @@
 def add(a, b):
     \"\"\"The sum of a and b.\"\"\"
-    return a - b
+    return a + b
"""


def git(root: Path, *args: str) -> str:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(root),
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    return subprocess.run(
        ["git", "-c", "commit.gpgsign=false", *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def make_repo(root: Path) -> Path:
    """``root`` as a committed git repository whose one test fails."""
    (root / "calc").mkdir(parents=True)
    (root / "calc" / "__init__.py").write_text(CALC)
    (root / "tests").mkdir()
    (root / "tests" / "test_calc.py").write_text(TEST)
    (root / "pyproject.toml").write_text('[tool.pytest.ini_options]\npythonpath = ["."]\n')
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "calc with a bug")
    return root


def run_tests(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(root / "tests")],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )


def call(call_id: str, name: str, **arguments: Any) -> dict[str, str]:
    return {"id": call_id, "name": name, "arguments": json.dumps(arguments)}


def fixing_turns() -> list[Reply]:
    """Look around, read the bug, patch it, run the tests, report."""
    return [
        Reply(text="Looking at the package.", tool_calls=[call("c1", "list_files")]),
        Reply(tool_calls=[call("c2", "read_file", path="calc/__init__.py")]),
        Reply(text="add() subtracts.", tool_calls=[call("c3", "apply_patch", patch=FIX)]),
        Reply(
            tool_calls=[
                call("c4", "run_command", command="python -m pytest -q -p no:cacheprovider")
            ]
        ),
        Reply(text="Fixed add(): it subtracted instead of adding. The test passes now."),
    ]
