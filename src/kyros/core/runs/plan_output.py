"""The plan a model answers with: the instructions that ask for it, parsing and validating the
reply into a :class:`~kyros.protocol.Plan`, and Markdown for people.

Models wrap JSON in fences or prose often enough that :func:`parse_plan` looks for the object
instead of insisting on a bare reply. When that fails, :class:`PlanInvalid` carries a short,
precise message (``steps[2].title: field required``) meant to be sent back to the model.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import ValidationError

from kyros.errors import KyrosError
from kyros.protocol import Plan

#: Replies longer than this are refused rather than scanned.
MAX_REPLY_CHARS = 512 * 1024
#: At most this many validation problems are listed in one message.
MAX_REPORTED_ERRORS = 5

_PLAN_KEYS = frozenset({"summary", "steps"})
_BACKTICKS_RE = re.compile(r"`+")

_DESCRIPTIONS: dict[tuple[str, ...], str] = {
    (): "A plan for reaching the goal in the given workspace.",
    ("summary",): "What will change and the approach, in a few sentences.",
    ("steps",): "Ordered steps, each small enough to implement and review on its own.",
    ("steps", "[]", "title"): "Imperative one-line title of the step.",
    ("steps", "[]", "detail"): "What to do and why, specific enough to implement.",
    ("steps", "[]", "files"): "Workspace-relative paths of files the step creates or changes.",
    ("steps", "[]", "tests"): "Tests to add or run that show the step works.",
    ("risks",): "What could go wrong or needs a decision; empty if nothing stands out.",
}


class PlanInvalid(KyrosError):
    """A model's reply is not a valid plan; the message says what to fix."""

    code = "plan_invalid"


# --- schema and instructions ---------------------------------------------------------------------


def _simplify(node: Any, defs: dict[str, Any], path: tuple[str, ...]) -> Any:
    """Inline ``$ref``s, drop titles, defaults and class docstrings, add field descriptions."""
    if isinstance(node, list):
        return [_simplify(item, defs, path) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return _simplify(defs[ref.removeprefix("#/$defs/")], defs, path)
    out: dict[str, Any] = {}
    if path in _DESCRIPTIONS:
        out["description"] = _DESCRIPTIONS[path]
    for key, value in node.items():
        if key in ("$defs", "title", "default", "description"):
            continue
        if key == "properties":
            out[key] = {name: _simplify(sub, defs, (*path, name)) for name, sub in value.items()}
        elif key == "items":
            out[key] = _simplify(value, defs, (*path, "[]"))
        else:
            out[key] = _simplify(value, defs, path)
    return out


def _plan_json_schema() -> dict[str, Any]:
    schema = Plan.model_json_schema()
    simplified: dict[str, Any] = _simplify(schema, schema.get("$defs", {}), ())
    return simplified


#: The JSON Schema of :class:`~kyros.protocol.Plan`, simplified for a prompt.
PLAN_JSON_SCHEMA: dict[str, Any] = _plan_json_schema()

_EXAMPLE = """\
{
  "summary": "Add a --json flag to the `list` command that prints the items as JSON.",
  "steps": [
    {
      "title": "Add the --json option",
      "detail": "Extend the list command with a boolean option and print the API response.",
      "files": ["src/app/cli.py"],
      "tests": ["tests/test_cli.py: --json prints parseable JSON with every item"]
    }
  ],
  "risks": ["Scripts may depend on the current table layout."]
}"""


def plan_instructions() -> str:
    """The system prompt asking a model for a plan in exactly the shape :func:`parse_plan` takes."""
    schema = json.dumps(PLAN_JSON_SCHEMA, separators=(",", ":"))
    return f"""\
You are the planning agent of a coding assistant. Read the goal and the workspace context, then \
write a plan for reaching the goal. Do not write the implementation itself.

Answer with exactly one JSON object and nothing else: no prose before or after it, no Markdown \
code fences, no comments, no trailing commas. The object has these fields:

- "summary" (string, required): what will change and the approach, in a few sentences.
- "steps" (array of 1 to 100 objects, required), in the order they should be done. Each step has:
  - "title" (string, required, at most 300 characters): an imperative one-line title.
  - "detail" (string): what to do and why, specific enough to implement.
  - "files" (array of strings): workspace-relative paths the step creates or changes.
  - "tests" (array of strings): tests to add or run that show the step works.
- "risks" (array of strings): what could go wrong or needs a decision; [] if nothing stands out.

Only name files that exist in the workspace or that the plan creates. If the reply is rejected, \
you will be told what was wrong; answer again with the corrected JSON object only.

Example of the shape (the content is illustrative):
{_EXAMPLE}

JSON Schema:
{schema}"""


# --- parsing -------------------------------------------------------------------------------------


def json_objects(text: str) -> tuple[list[dict[str, Any]], json.JSONDecodeError | None]:
    """Every outermost JSON object in ``text``, in order, and the decode error of the ``{`` that
    got furthest before failing (the broken plan, not a brace in the prose), if any."""
    decoder = json.JSONDecoder()
    found: list[dict[str, Any]] = []
    error: json.JSONDecodeError | None = None
    error_span = -1
    pos = text.find("{")
    while pos != -1:
        try:
            value, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            if exc.pos - pos > error_span:
                error, error_span = exc, exc.pos - pos
            pos = text.find("{", pos + 1)
            continue
        if isinstance(value, dict):
            found.append(value)
        pos = text.find("{", end)
    return found, error


def _unwrap(obj: dict[str, Any]) -> dict[str, Any]:
    """``{"plan": {...}}`` is accepted as the plan it wraps."""
    inner = obj.get("plan")
    if len(obj) == 1 and isinstance(inner, dict):
        return inner
    return obj


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out or "(top level)"


def describe_validation_error(exc: ValidationError) -> str:
    """``steps[2].title: field required; risks[0]: input should be a valid string``."""
    errors = exc.errors(include_url=False, include_input=False)
    parts = []
    for err in errors[:MAX_REPORTED_ERRORS]:
        msg = str(err["msg"])
        msg = msg[:1].lower() + msg[1:]
        parts.append(f"{_loc(tuple(err['loc']))}: {msg}")
    if len(errors) > MAX_REPORTED_ERRORS:
        parts.append(f"and {len(errors) - MAX_REPORTED_ERRORS} more")
    return "; ".join(parts)


def _validate(obj: dict[str, Any]) -> Plan:
    try:
        return Plan.model_validate(obj)
    except ValidationError as exc:
        raise PlanInvalid(describe_validation_error(exc)) from None


def parse_plan(text: str) -> Plan:
    """The :class:`~kyros.protocol.Plan` in a model's reply.

    Accepts a bare JSON object, one inside a ```json fence, or one surrounded by prose: the
    outermost JSON objects in the reply are tried in order, those with a ``summary`` or
    ``steps`` key first. Raises :class:`PlanInvalid` with a message for the model otherwise.
    """
    if len(text) > MAX_REPLY_CHARS:
        raise PlanInvalid(f"reply too long ({len(text)} characters); answer with the plan only")
    if not text.strip():
        raise PlanInvalid("empty reply; expected one JSON object")
    objects, json_error = json_objects(text)
    candidates = [_unwrap(obj) for obj in objects]
    plan_like = [obj for obj in candidates if _PLAN_KEYS & obj.keys()]
    if not plan_like:
        if json_error is not None:
            # The object that failed to parse is most likely the plan: report why.
            raise PlanInvalid(
                f"invalid JSON at line {json_error.lineno} column {json_error.colno}: "
                f"{json_error.msg}"
            )
        if not candidates:
            raise PlanInvalid("no JSON object found; answer with one JSON object")
        plan_like = candidates
    problem: PlanInvalid | None = None
    for obj in plan_like:
        try:
            return _validate(obj)
        except PlanInvalid as exc:
            problem = problem or exc
    assert problem is not None
    raise problem


# --- markdown ------------------------------------------------------------------------------------


def _code(text: str) -> str:
    longest = max((len(m) for m in _BACKTICKS_RE.findall(text)), default=0)
    ticks = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def _indent(text: str, prefix: str) -> str:
    return "\n".join(prefix + line if line.strip() else "" for line in text.splitlines())


def _one_line(text: str) -> str:
    return " ".join(text.split())


def render_plan_markdown(plan: Plan) -> str:
    """The plan as Markdown: ``## Summary``, ``## Steps`` (numbered, with files and tests as
    sub-bullets) and ``## Risks``."""
    out = ["## Summary", "", plan.summary.strip(), "", "## Steps", ""]
    for number, step in enumerate(plan.steps, start=1):
        marker = f"{number}. "
        pad = " " * len(marker)
        out.append(f"{marker}**{_one_line(step.title)}**")
        if step.detail.strip():
            out += ["", _indent(step.detail.strip(), pad)]
        sub: list[str] = []
        if step.files:
            sub.append(f"{pad}- Files:")
            sub += [f"{pad}  - {_code(_one_line(f))}" for f in step.files]
        if step.tests:
            sub.append(f"{pad}- Tests:")
            sub += [f"{pad}  - {_one_line(t)}" for t in step.tests]
        if sub:
            out += ["", *sub]
        out.append("")
    out += ["## Risks", ""]
    out += [f"- {_one_line(r)}" for r in plan.risks] or ["None identified."]
    return "\n".join(out) + "\n"
