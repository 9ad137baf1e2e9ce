"""Whether an agent's tool call runs, is refused, or waits for a human.

The decision depends only on the agent's policy, the call, and what the human already said in
this run; nothing the model sends can change the policy (it has no such parameter).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any, Literal

Decision = Literal["run", "deny", "ask"]

#: Shell syntax that chains or redirects: an allow-listed prefix must not smuggle in more.
_SHELL_META = (";", "&", "|", "`", "$(", ">", "<", "\n", "\r")


@dataclass(frozen=True)
class Verdict:
    decision: Decision
    reason: str


def command_allowed(command: str, allowed: list[str]) -> bool:
    """True if ``command`` is a plain command whose first words are an allow-list entry."""
    if any(token in command for token in _SHELL_META):
        return False
    try:
        words = shlex.split(command)
    except ValueError:
        return False
    for entry in allowed:
        prefix = entry.split()
        if prefix and words[: len(prefix)] == prefix:
            return True
    return False


def decide(
    *,
    policy: str,
    tool_class: str,
    tools: frozenset[str],
    call_id: str,
    arguments: dict[str, Any],
    allowed_commands: list[str],
    params: dict[str, Any],
) -> Verdict:
    """The verdict for one call; ``params`` carries this run's earlier human decisions."""
    if tool_class not in tools:
        return Verdict("deny", f"this agent has no {tool_class} tools")
    answered = (params.get("decisions") or {}).get(call_id)
    if answered is not None:
        if answered.get("approve"):
            return Verdict("run", "approved by a human")
        why = answered.get("reason") or "no reason given"
        return Verdict("deny", f"a human denied this action ({why})")
    if tool_class == "read":
        return Verdict("run", "reads are always allowed")
    if policy == "read-only":
        return Verdict("deny", "the agent's policy is read-only: no writes, no commands")
    if policy == "full":
        return Verdict("run", "the agent's policy is full")
    if tool_class in (params.get("always") or []):
        return Verdict("run", f"a human approved every {tool_class} action of this run")
    if policy == "auto":
        if tool_class == "write":
            return Verdict("run", "writes go to the run's own worktree")
        if command_allowed(str(arguments.get("command", "")), allowed_commands):
            return Verdict("run", "the command is on the agent's allow-list")
    return Verdict("ask", f"the agent's policy asks before every {tool_class} action")
