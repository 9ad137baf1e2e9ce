"""The ``demo`` model at work: an implement run's steps and a critic's verdict, scripted.

An implement run gets real tool calls, one step per turn, chosen from what the conversation
holds so far (the tool results kyros stored), so a resumed run goes on at the next step:

1. ``list_files`` and ``read_file`` of :data:`NOTE` (it may exist from an earlier demo);
2. ``write_file`` of :data:`NOTE`: the earlier note, if any, plus a section for this task;
3. ``run_command`` ``cat NOTE``, the check a model would run (allow-listed for ``auto``);
4. the final answer, which says what was done and that it was scripted.

A note file is the one edit that applies in any workspace, whatever its language, and it can
never break the user's code. The run's diff is the note: real, small, and honest about itself.

A critic's review counts the change's files and lines and passes it with :data:`SCORE`, so a
demo pipeline goes plan → implement → critic gate → succeeded.
"""

from __future__ import annotations

import json
import re
from typing import Any

from kyros.core.ai.demo import CHANGE_HEADER, DEMO_BANNER, TASK_HEADER
from kyros.core.tools.sanitize import clean_text

#: The file the demo writes, at the workspace root (one name: an earlier note is appended to).
NOTE = "KYROS-DEMO.md"
#: The demo critic's score: above the pass threshold (70), below a perfect one.
SCORE = 80
#: Longest goal quoted in a note or a summary.
GOAL_CHARS = 200

_NUMBERED = re.compile(r"^ *\d+\| (.*)$")
_STEP_TITLE = re.compile(r"^\d+\. \*\*(.+)\*\*$", re.MULTILINE)
_HUNK = re.compile(r"^@@ -\d+(?:,\d+)? \+(\d+)(?:,\d+)? @@")


def _call(call_id: str, name: str, **arguments: Any) -> dict[str, str]:
    return {"id": call_id, "name": name, "arguments": json.dumps(arguments, ensure_ascii=False)}


def _one_line(text: str, limit: int = GOAL_CHARS) -> str:
    flat = " ".join(clean_text(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _task(messages: list[dict[str, Any]]) -> str:
    """This run's task: the last user message that states one."""
    for message in reversed(messages):
        content = message.get("content")
        if message.get("role") == "user" and str(content).startswith(TASK_HEADER):
            return str(content)
    return TASK_HEADER


#: The sections an implement task may have, in order (see kyros.core.runs.implement).
_SECTIONS = ("Task", "Plan to follow", "A reviewer asked for revisions of your change")


def _section(task: str, name: str) -> str:
    """The text of section ``## name`` of the task, up to the next of :data:`_SECTIONS` (a
    plan is Markdown with ``##`` headings of its own)."""
    later = "|".join(re.escape(s) for s in _SECTIONS[_SECTIONS.index(name) + 1 :]) or "$^"
    match = re.search(
        rf"^## {re.escape(name)}\n(.*?)(?=^## (?:{later})\n|\Z)", task, re.MULTILINE | re.DOTALL
    )
    return match.group(1).strip() if match else ""


def _results(messages: list[dict[str, Any]]) -> dict[str, str]:
    """Tool results by call id (only this run's: other runs' tool traffic is left out)."""
    return {
        str(m.get("tool_call_id")): str(m.get("content") or "")
        for m in messages
        if m.get("role") == "tool"
    }


def _written_path(messages: list[dict[str, Any]]) -> str:
    """The path this run's ``demo-write`` call wrote (the note, or its sibling)."""
    for message in messages:
        for call in message.get("tool_calls") or []:
            if call.get("id") == "demo-write":
                try:
                    return str(json.loads(call["function"]["arguments"])["path"])
                except (KeyError, TypeError, ValueError):
                    break
    return NOTE


def whole_file(read_output: str) -> str | None:
    """The file's text from a ``read_file`` result when it holds all of it; ``""`` when the
    file is empty; None when there is no such file or only part of it was shown."""
    if read_output.startswith("error:") or read_output.startswith("not allowed"):
        return None
    if read_output.endswith(" is empty"):
        return ""
    lines = []
    for line in read_output.splitlines():
        match = _NUMBERED.match(line)
        if match is None or line.endswith(" [… line cut]"):
            return None  # a note about a cut, a binary file: not all of it is here
        lines.append(match.group(1))
    return "\n".join(lines) + "\n"


def _note(task: str, files_seen: int, earlier: str | None) -> str:
    goal = _one_line(_section(task, "Task")) or "(no goal given)"
    lines = [f"## {goal}", "", DEMO_BANNER, ""]
    lines.append(
        "kyros's scripted demo wrote this note in the run's own worktree, where a model would "
        f"have changed the code. It saw {files_seen} file(s) in the workspace."
    )
    steps = _STEP_TITLE.findall(_section(task, "Plan to follow"))
    if steps:
        lines += ["", f"The plan it was given has {len(steps)} step(s):"]
        lines += [f"- {_one_line(title, 120)}" for title in steps[:10]]
    findings = _section(task, "A reviewer asked for revisions of your change")
    if findings:
        lines += ["", "A reviewer asked for revisions; they are noted here, not made."]
    head = "# kyros demo notes\n\n" if not earlier else earlier.rstrip("\n") + "\n\n"
    return head + "\n".join(lines) + "\n"


def implement_step(messages: list[dict[str, Any]]) -> str | dict[str, Any]:
    """The agent's next step: tool calls, or the final answer once the note is checked."""
    done = _results(messages)
    task = _task(messages)
    if "demo-read" not in done:
        return {
            "text": f"{DEMO_BANNER} First a look at the workspace, and at {NOTE}.",
            "tool_calls": [
                _call("demo-list", "list_files"),
                _call("demo-read", "read_file", path=NOTE),
            ],
        }
    if "demo-write" not in done:
        listing = done.get("demo-list", "")
        seen = sum(1 for line in listing.splitlines() if line and not line.startswith("… "))
        earlier = whole_file(done["demo-read"])
        exists = not done["demo-read"].startswith("error:")
        # A note too long to read whole is left alone: the section goes into a sibling.
        path = NOTE if earlier is not None or not exists else NOTE.replace(".md", "-2.md")
        return {
            "text": f"{DEMO_BANNER} Writing a note for the task to {path}.",
            "tool_calls": [
                _call("demo-write", "write_file", path=path, content=_note(task, seen, earlier))
            ],
        }
    path = _written_path(messages)
    if "demo-check" not in done:
        return {
            "text": f"{DEMO_BANNER} Checking what was written.",
            "tool_calls": [_call("demo-check", "run_command", command=f"cat {path}")],
        }
    goal = _one_line(_section(task, "Task"))
    wrote = done["demo-write"]
    if not wrote.startswith("wrote "):
        return f"{DEMO_BANNER} The note for “{goal}” could not be written: {_one_line(wrote)}"
    return (
        f"{DEMO_BANNER} Added a note for “{goal}” to {path}: a scripted demo writes a note, "
        "not code. It listed the workspace, read the note, wrote it and checked it with "
        "`cat`, as a model would through the same tools. Configure a model "
        "(`kyros run implement --help`) for real work."
    )


def _diff_of(messages: list[dict[str, Any]]) -> str:
    for message in messages:
        content = message.get("content")
        if message.get("role") == "user" and isinstance(content, str) and CHANGE_HEADER in content:
            body = content.split(CHANGE_HEADER, 1)[1]
            return body.rsplit("```", 1)[0]
    return ""


def _diff_stats(diff: str) -> tuple[list[str], int, int, int | None]:
    """Files touched, lines added, lines removed, and the first added line of the first file."""
    files: list[str] = []
    added = removed = 0
    first_line: int | None = None
    new_line: int | None = None
    for line in diff.splitlines():
        if line.startswith("+++ "):
            path = line[4:].strip()
            if path != "/dev/null":
                files.append(path[2:] if path.startswith("b/") else path)
            new_line = None
            continue
        if line.startswith("--- "):
            path = line[4:].strip()
            if path != "/dev/null":
                files.append(path[2:] if path.startswith("a/") else path)
            continue
        hunk = _HUNK.match(line)
        if hunk:
            new_line = int(hunk.group(1))
            continue
        if line.startswith("+"):
            added += 1
            if first_line is None and new_line is not None and len(set(files)) == 1:
                first_line = new_line
        elif line.startswith("-"):
            removed += 1
            continue
        if new_line is not None:
            new_line += 1
    return list(dict.fromkeys(files)), added, removed, first_line


def review_reply(messages: list[dict[str, Any]]) -> str:
    """A valid assessment (JSON) of the change in the prompt: it passes, with findings."""
    files, added, removed, first_line = _diff_stats(_diff_of(messages))
    where = files[0] if files else None
    findings: list[dict[str, Any]] = [
        {
            "severity": "info",
            "file": where,
            "line": first_line if where else None,
            "message": f"{added} line(s) added and {removed} removed in {len(files)} file(s); "
            "a model would judge their correctness, tests and security.",
        }
    ]
    findings += [
        {
            "severity": "info",
            "file": path,
            "line": None,
            "message": "also changed; not read by a model.",
        }
        for path in files[1:3]
    ]
    verdict = {
        "score": SCORE,
        "verdict": "pass",
        "summary": f"{DEMO_BANNER} The change touches {len(files)} file(s) (+{added} -{removed} "
        "lines) and passes this scripted review. Configure a model for a real one.",
        "findings": findings,
    }
    return json.dumps(verdict, indent=2, ensure_ascii=False)
