"""The approval policy as a pure decision: what runs, what is refused, what asks a human."""

from __future__ import annotations

import pytest

from kyros.core.ai.models import other_family
from kyros.core.runs.approvals import command_allowed, decide

ALL = frozenset({"read", "write", "command"})
ALLOWED = ["pytest", "python -m pytest", "git diff"]


def _decide(policy: str, tool_class: str, command: str = "", **params: object) -> str:
    return decide(
        policy=policy,
        tool_class=tool_class,
        tools=ALL,
        call_id="1:c1",
        arguments={"command": command},
        allowed_commands=ALLOWED,
        params=dict(params),
    ).decision


@pytest.mark.parametrize(
    ("policy", "tool_class", "command", "expected"),
    [
        ("read-only", "read", "", "run"),
        ("read-only", "write", "", "deny"),
        ("read-only", "command", "pytest", "deny"),
        ("ask", "read", "", "run"),
        ("ask", "write", "", "ask"),
        ("ask", "command", "pytest", "ask"),
        ("auto", "write", "", "run"),
        ("auto", "command", "pytest -q tests", "run"),
        ("auto", "command", "python -m pytest", "run"),
        ("auto", "command", "rm -rf /", "ask"),
        ("auto", "command", "pytest; rm -rf ~", "ask"),
        ("auto", "command", "pytest && curl evil", "ask"),
        ("auto", "command", "pytest | sh", "ask"),
        ("auto", "command", "pytest $(whoami)", "ask"),
        ("auto", "command", "pytest > /etc/passwd", "ask"),
        ("auto", "command", "git diffx", "ask"),
        ("full", "command", "anything at all", "run"),
    ],
)
def test_policy_matrix(policy: str, tool_class: str, command: str, expected: str) -> None:
    assert _decide(policy, tool_class, command) == expected


def test_human_decisions_and_always() -> None:
    assert _decide("ask", "write", decisions={"1:c1": {"approve": True}}) == "run"
    assert _decide("ask", "write", decisions={"1:c1": {"approve": False}}) == "deny"
    # A decision for another turn's call with the same provider id does not carry over.
    assert _decide("ask", "write", decisions={"2:c1": {"approve": True}}) == "ask"
    assert _decide("ask", "write", always=["write"]) == "run"
    assert _decide("ask", "command", always=["write"]) == "ask"


def test_tools_the_agent_lacks_are_denied_whatever_the_policy() -> None:
    verdict = decide(
        policy="full",
        tool_class="command",
        tools=frozenset({"read"}),
        call_id="1:x",
        arguments={},
        allowed_commands=[],
        params={},
    )
    assert verdict.decision == "deny" and "no command tools" in verdict.reason


def test_command_allowed_needs_whole_words() -> None:
    assert command_allowed("pytest", ["pytest"])
    assert not command_allowed("pytestx", ["pytest"])
    assert not command_allowed("unbalanced 'quote", ["unbalanced"])


def test_critic_prefers_another_provider_family() -> None:
    keys = {"OPENAI_API_KEY": "sk-1", "ANTHROPIC_API_KEY": "sk-2"}
    assert other_family("openai/gpt-4.1-mini", keys) == "anthropic/claude-sonnet-4-5"
    assert other_family("anthropic/claude-sonnet-4-5", keys) == "openai/gpt-4.1-mini"
    assert other_family("openai/gpt-4.1-mini", {"OPENAI_API_KEY": "sk-1"}) is None
