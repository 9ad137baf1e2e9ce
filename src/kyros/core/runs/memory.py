"""Conversation memory: a thread's messages as a chat, and compaction before it overflows.

Compaction never deletes: it adds a ``summary`` message covering everything up to a message id
(``meta.upto``); the chat sent to a model is the newest summary plus what came after it.
"""

from __future__ import annotations

import json
from typing import Any

#: Compact when the chat would take more than this share of the model's context window...
COMPACT_AT = 0.6
#: ...keeping roughly this share verbatim after the summary.
KEEP_SHARE = 0.25

SUMMARIZE_PROMPT = (
    "Summarize the conversation so far so that the work can continue from your summary alone. "
    "Keep: the goal, decisions taken and why, files read or changed (with paths), commands run "
    "and their outcome, problems still open, and what was about to happen next. Be concise and "
    "factual; no preamble."
)


def estimate_tokens(messages: list[dict[str, Any]]) -> int:
    """A cheap, conservative token estimate (~4 characters per token)."""
    total = 0
    for m in messages:
        total += len(str(m.get("content") or "")) + 16
        if m.get("tool_calls"):
            total += len(json.dumps(m["tool_calls"]))
    return total // 4 + 1


def _latest_summary(history: list[dict[str, Any]]) -> dict[str, Any] | None:
    for message in reversed(history):
        if message["role"] == "summary":
            return dict(message)
    return None


def to_chat(history: list[dict[str, Any]], run_id: str) -> list[dict[str, Any]]:
    """The thread as chat messages for ``run_id``.

    Tool traffic of other runs (earlier stages, or the run being continued) is left out: their
    calls belonged to another worktree, and a tool call without its result is invalid chat.
    """
    summary = _latest_summary(history)
    upto = int((summary or {}).get("meta", {}).get("upto", 0)) if summary else 0
    chat: list[dict[str, Any]] = []
    if summary is not None:
        chat.append(
            {
                "role": "user",
                "content": f"Summary of the conversation so far:\n{summary['content']}",
            }
        )
    for m in history:
        if m["id"] <= upto or m["role"] in ("summary", "system"):
            continue
        meta = m.get("meta") or {}
        own = m.get("run_id") == run_id
        if m["role"] == "user":
            chat.append({"role": "user", "content": m["content"]})
        elif m["role"] == "assistant":
            message: dict[str, Any] = {"role": "assistant", "content": m["content"] or None}
            if own and meta.get("tool_calls"):
                message["tool_calls"] = meta["tool_calls"]
            elif not m["content"]:
                continue
            chat.append(message)
        elif m["role"] == "tool" and own:
            chat.append(
                {"role": "tool", "tool_call_id": meta.get("tool_call_id"), "content": m["content"]}
            )
    return chat


def compaction_cut(history: list[dict[str, Any]], keep_tokens: int) -> int | None:
    """The id of the last message to summarize, or None when there is nothing worth it.

    The kept tail starts at a user message or an assistant message, never at a tool result, so
    no tool call is separated from its result.
    """
    summary = _latest_summary(history)
    upto = int((summary or {}).get("meta", {}).get("upto", 0)) if summary else 0
    live = [m for m in history if m["id"] > upto and m["role"] not in ("summary", "system")]
    kept = 0
    for index in range(len(live) - 1, 0, -1):
        kept += len(str(live[index]["content"] or "")) // 4 + 4
        if kept >= keep_tokens and live[index]["role"] in ("user", "assistant"):
            return int(live[index - 1]["id"])
    return None


def summary_request(history: list[dict[str, Any]], upto: int) -> list[dict[str, Any]]:
    """The chat asking a model to summarize every message up to ``upto``."""
    summary = _latest_summary(history)
    lines: list[str] = []
    if summary is not None:
        lines.append(f"[earlier summary]\n{summary['content']}")
    start = int(summary["meta"].get("upto", 0)) if summary else 0
    for m in history:
        if start < m["id"] <= upto and m["role"] not in ("summary", "system"):
            calls = (m.get("meta") or {}).get("tool_calls")
            text = m["content"] or ""
            if calls:
                text += "\n[tool calls] " + json.dumps(calls)[:2000]
            lines.append(f"[{m['role']}]\n{text[:8000]}")
    return [
        {"role": "system", "content": SUMMARIZE_PROMPT},
        {"role": "user", "content": "\n\n".join(lines)},
    ]
