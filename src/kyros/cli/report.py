"""The one path an error takes to the user.

Every failure of a command ends here (:func:`report`, called by ``kyros.cli.main.run``): a
:class:`~kyros.errors.KyrosError`, a usage error of the command line, or a bug. It becomes

- text on stderr: ``kyros: error: MESSAGE`` and, when the message does not already say it,
  ``kyros: try: HINT`` (the next command to run);
- with ``--json`` (or ``--jsonl``) on the command line, also one JSON document on stdout,
  ``{"error": {"code", "message", "hint"}}``, so a script reading stdout learns what failed;
- an exit code (``kyros.errors.ExitCode``): 70 for a bug, never 1, which means "run failed".

Messages speak the command line's language: a wire field the daemon names (``approval_policy``,
``query.status``) becomes the flag the user typed (``--policy``, ``--status``) and the
validator's phrasing becomes words, unless ``--debug``. Every message passes the one sanitiser
(:mod:`kyros.sanitize`): it may quote a value the user, a file or a daemon supplied.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from typing import Any

from kyros.errors import ExitCode, KyrosError
from kyros.sanitize import clean_text

__all__ = ["Report", "describe", "report", "wants_json"]

#: Wire fields as the user typed them: the flag (or argument) of the command that sends each.
FLAGS = {
    "approval_policy": "--policy",
    "system_prompt": "--prompt",
    "max_turns": "--max-turns",
    "max_tool_calls": "--max-tool-calls",
    "wall_seconds": "--wall-seconds",
    "allowed_commands": "--allow",
    "max_revisions": "--max-revisions",
    "stronger_model": "--stronger-model",
    "api_base": "--api-base",
    "plan_run": "--plan",
    "continue_run": "--continue",
    "target_run": "--run",
    "range": "--range",
    "diff": "--diff",
    "goal": "GOAL",
    "name": "NAME",
    "command": "CMD",
    "data": "TEXT",
    "cwd": "--cwd",
    "paused": "--pause/--resume",
}

#: Where a command group names a field otherwise (``kyros term new --name``, not ``NAME``).
GROUP_FLAGS = {"term": {"name": "--name"}}

#: The validator's error types in words (pydantic's ``type`` of each error).
WORDS = {
    "missing": "is required",
    "string_too_short": "must not be empty",
    "too_short": "must not be empty",
    "string_too_long": "is too long",
    "too_long": "has too many items",
    "string_pattern_mismatch": "holds characters it may not (letters, digits, '-', '_' only)",
    "literal_error": "is not one of the accepted values",
    "enum": "is not one of the accepted values",
    "int_parsing": "must be a whole number",
    "float_parsing": "must be a number",
    "greater_than_equal": "is too small",
    "less_than_equal": "is too large",
    "greater_than": "is too small",
    "less_than": "is too large",
    "bool_parsing": "must be true or false",
    "extra_forbidden": "is not a setting kyros knows",
    "value_error": "is not valid",
}

#: Validator phrasing that must never reach a user, and what stands in for it.
_VALIDATOR_PHRASES = (
    (re.compile(r"Value should have at least 1 items? after validation"), "must not be empty"),
    (re.compile(r"String should have at least 1 character"), "must not be empty"),
    (re.compile(r"String should match pattern '[^']*'"), "holds characters it may not"),
    (re.compile(r"Input should be (.*)"), r"must be \1"),
    (re.compile(r"Field required"), "is required"),
)

#: Where to look next for what the daemon says it does not know (by the command's group).
LIST_COMMANDS = {
    "run": "kyros runs list",
    "runs": "kyros runs list",
    "agents": "kyros agents list",
    "term": "kyros term ls",
    "models": "kyros models list",
    "usage": "kyros runs list",
    "auth": "kyros auth list",
}


@dataclass
class Report:
    """What the user is told: a stable ``code``, a ``message``, a ``hint`` and the exit code."""

    code: str
    message: str
    hint: str | None
    exit_code: int

    def document(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "hint": self.hint}}


def _args(argv: list[str]) -> list[str]:
    """The command line's words before ``--`` (after it, words are a command's own)."""
    return argv[: argv.index("--")] if "--" in argv else argv


def wants_json(argv: list[str]) -> bool:
    """Whether the command line asked for JSON on stdout."""
    words = _args(argv)
    return "--json" in words or "--jsonl" in words


def _command(argv: list[str]) -> list[str]:
    """The command's words (``["runs", "show"]``): the leading words that are not options."""
    out: list[str] = []
    skip = False
    for word in _args(argv):
        if skip:
            skip = False
            continue
        if word in ("--daemon", "--token"):
            skip = True
            continue
        if word.startswith("-"):
            continue
        out.append(word)
        if len(out) == 2:
            break
    return out


def _flag(loc: list[str], group: str = "") -> str:
    parts = [p for p in loc if p not in ("body", "query", "path", "header")]
    if not parts:
        return "the request"
    field = parts[0]
    flags = {**FLAGS, **GROUP_FLAGS.get(group, {})}
    if field in flags:
        return flags[field]
    if field in ("limits", "escalation") and len(parts) > 1:
        return FLAGS.get(parts[1], "--" + parts[1].replace("_", "-"))
    return "--" + field.replace("_", "-")


#: The name patterns of the wire schemas (kyros.protocol), in words.
PATTERNS = {
    "^[a-z0-9][a-z0-9_-]{0,63}$": "must be 1-64 lowercase letters, digits, '-' or '_', "
    "starting with a letter or digit",
    "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$": "must be 1-64 letters, digits, '.', '-' or '_', "
    "starting with a letter or digit",
}


def _value_of(flag: str, argv: list[str]) -> str | None:
    """What the user gave ``flag`` on the command line (the last time, as click takes it)."""
    found = None
    words = _args(argv)
    for i, word in enumerate(words):
        if word == flag and i + 1 < len(words):
            found = words[i + 1]
        elif word.startswith(flag + "="):
            found = word[len(flag) + 1 :]
    return found


def _validation(exc: KyrosError, argv: list[str]) -> str | None:
    """A daemon's validation error (``invalid_input`` with the validator's list) in words:
    the flag, the value given, what it should be."""
    if exc.code != "invalid_input" or not isinstance(exc.detail, list) or not exc.detail:
        return None
    first = exc.detail[0]
    if not isinstance(first, dict):
        return None
    command = _command(argv)
    flag = _flag([str(p) for p in first.get("loc") or []], command[0] if command else "")
    kind, msg = str(first.get("type")), str(first.get("msg") or "is not valid")
    pattern = re.search(r"String should match pattern '([^']*)'", msg)
    if kind in ("literal_error", "enum"):
        words = _unphrase(msg)  # "must be 'read-only', 'ask', 'auto' or 'full'"
    elif pattern and pattern.group(1) in PATTERNS:
        words = PATTERNS[pattern.group(1)]
    else:
        words = WORDS.get(kind) or _unphrase(msg)
    value = _value_of(flag, argv) if flag.startswith("--") else None
    given = f" {value!r}" if value is not None else ""
    return f"{flag}{given}: {words}"


def _unphrase(text: str) -> str:
    for pattern, words in _VALIDATOR_PHRASES:
        text = pattern.sub(words, text)
    return text


def _hint_in(message: str) -> str | None:
    """The first command a message names in backticks (``…: `kyros agents list` shows them``)."""
    found = re.search(r"`(kyros [^`]+)`", message)
    return found.group(1) if found else None


def _default_hint(exc: KyrosError, argv: list[str]) -> str | None:
    words = _command(argv)
    group = words[0] if words else ""
    if exc.code == "not_found":
        return LIST_COMMANDS.get(group)
    if exc.exit_code == ExitCode.USAGE and words:
        return f"kyros {' '.join(words)} --help"
    if exc.exit_code == ExitCode.DAEMON_UNREACHABLE:
        return "kyros daemon status"
    if exc.exit_code == ExitCode.INTERNAL:
        return "kyros daemon logs"
    return None


def describe(exc: BaseException, argv: list[str], *, debug: bool = False) -> Report:
    """The :class:`Report` for ``exc``, raised by the command ``argv`` (``sys.argv[1:]``)."""
    if isinstance(exc, KyrosError):
        message = exc.message
        if not debug:
            message = _validation(exc, argv) or _unphrase(message)
        hint = exc.hint or _hint_in(message) or _default_hint(exc, argv)
        return Report(exc.code, clean_text(message), hint, exc.exit_code)
    format_message = getattr(exc, "format_message", None)
    if callable(format_message):  # the command line's own usage errors (click, in Typer)
        ctx = getattr(exc, "ctx", None)
        path = "kyros"
        if ctx is not None:  # "python -m kyros usage" is "kyros usage" to the user
            root = str(ctx.find_root().info_name or "")
            path = "kyros" + str(ctx.command_path)[len(root) :]
        code = int(getattr(exc, "exit_code", ExitCode.USAGE) or ExitCode.USAGE)
        return Report("usage", clean_text(str(format_message())), f"{path} --help", code)
    return Report(
        "internal",
        f"internal error ({type(exc).__name__}): {clean_text(str(exc))}".rstrip(": "),
        "run again with --debug for the traceback, and please report it",
        ExitCode.INTERNAL,
    )


def report(exc: BaseException, argv: list[str], *, debug: bool = False) -> int:
    """Tell the user about ``exc`` (stderr, and stdout's JSON document with ``--json``);
    return the exit code."""
    r = describe(exc, argv, debug=debug)
    shown_by_click = callable(getattr(exc, "show", None)) and not isinstance(exc, KyrosError)
    if shown_by_click:
        exc.show()  # type: ignore[attr-defined]  # click's "Usage: …" and "Error: …"
    else:
        sys.stderr.write(f"kyros: error: {r.message}\n")
        if r.hint and r.hint not in r.message:
            sys.stderr.write(f"kyros: try: {clean_text(r.hint)}\n")
    if wants_json(argv):
        from kyros.cli.state import print_json

        print_json(r.document())
    return r.exit_code
