"""Parsing, validating and rendering a model's plan reply."""

from __future__ import annotations

import json

import pytest

from kyros.core.runs.plan_output import (
    PLAN_JSON_SCHEMA,
    PlanInvalid,
    parse_plan,
    plan_instructions,
    render_plan_markdown,
)
from kyros.errors import KyrosError
from kyros.protocol import Plan, PlanStep

PLAN = {
    "summary": "Cache parsed configs.",
    "steps": [
        {
            "title": "Add a cache",
            "detail": "Keep parsed configs keyed by path and mtime.",
            "files": ["src/app/config.py"],
            "tests": ["tests/test_config.py"],
        },
        {"title": "Invalidate on write"},
    ],
    "risks": ["Stale entries if mtime resolution is coarse."],
}
PLAN_JSON = json.dumps(PLAN, indent=2)


def _message(text: str) -> str:
    with pytest.raises(PlanInvalid) as info:
        parse_plan(text)
    return info.value.message


def test_raw_json() -> None:
    plan = parse_plan(PLAN_JSON)
    assert plan == Plan.model_validate(PLAN)
    assert plan.steps[1].files == []


def test_json_fence_with_prose() -> None:
    reply = f"Here is the plan:\n\n```json\n{PLAN_JSON}\n```\n\nLet me know if it works."
    assert parse_plan(reply).summary == "Cache parsed configs."


def test_plain_fence() -> None:
    assert parse_plan(f"```\n{PLAN_JSON}\n```").steps[0].title == "Add a cache"


def test_json_surrounded_by_prose_with_braces() -> None:
    reply = (
        'Sure {happy to help}! The plan, as {"json"}:\n'
        f"{PLAN_JSON}\nThe {{braces}} above are the whole answer."
    )
    assert len(parse_plan(reply).steps) == 2


def test_braces_inside_strings() -> None:
    plan = dict(PLAN, summary="Use {placeholders} and a literal } brace.")
    assert parse_plan(json.dumps(plan)).summary == plan["summary"]


def test_plan_like_object_preferred_over_an_earlier_example() -> None:
    reply = 'Config looks like {"path": "x.toml"}. Plan:\n' + PLAN_JSON
    assert parse_plan(reply).summary == "Cache parsed configs."


def test_wrapped_in_a_plan_key() -> None:
    assert parse_plan(json.dumps({"plan": PLAN})).summary == "Cache parsed configs."


def test_extra_keys_are_ignored() -> None:
    plan = dict(PLAN, confidence=0.9)
    assert parse_plan(json.dumps(plan)).risks == PLAN["risks"]


def test_missing_step_title_names_the_field() -> None:
    plan = json.loads(PLAN_JSON)
    plan["steps"].append({"detail": "no title"})
    assert _message(json.dumps(plan)) == "steps[2].title: field required"


def test_missing_top_level_fields() -> None:
    assert _message('{"summary": "only a summary"}') == "steps: field required"
    assert _message('{"steps": [{"title": "t"}]}') == "summary: field required"


def test_several_problems_in_one_message() -> None:
    reply = json.dumps({"summary": "", "steps": [{"title": "t", "files": "a.py"}], "risks": [1]})
    message = _message(reply)
    assert message.startswith("summary: string should have at least 1 character")
    assert "steps[0].files: input should be a valid list" in message
    assert "risks[0]: input should be a valid string" in message


def test_empty_steps() -> None:
    assert _message('{"summary": "s", "steps": []}').startswith(
        "steps: list should have at least 1"
    )


def test_too_many_errors_are_summarised() -> None:
    steps = [{"detail": "x"} for _ in range(8)]
    message = _message(json.dumps({"summary": "s", "steps": steps}))
    assert message.count("field required") == 5
    assert message.endswith("and 3 more")


def test_no_json_object() -> None:
    assert _message("I could not come up with a plan.") == (
        "no JSON object found; answer with one JSON object"
    )
    assert _message("[1, 2, 3]") == "no JSON object found; answer with one JSON object"


def test_empty_reply() -> None:
    assert _message("  \n") == "empty reply; expected one JSON object"


def test_malformed_json_reports_position() -> None:
    reply = '{\n  "summary": "s",\n  "steps": [{"title": "t"},]\n}'
    assert _message(reply) == "invalid JSON at line 3 column 28: Expecting value"
    # A brace in the prose before the broken plan does not hide the plan's error.
    assert _message("Using {x} here.\n" + reply) == (
        "invalid JSON at line 4 column 28: Expecting value"
    )


def test_object_without_plan_keys_is_validated() -> None:
    assert _message('{"answer": 42}') == "summary: field required; steps: field required"


def test_reply_too_long() -> None:
    assert _message("x" * (600 * 1024)).startswith("reply too long")


def test_plan_invalid_is_a_kyros_error() -> None:
    err = PlanInvalid("steps: field required")
    assert isinstance(err, KyrosError)
    assert err.to_dict() == {
        "error": {"code": "plan_invalid", "message": "steps: field required", "detail": None}
    }


def test_schema_is_simplified() -> None:
    text = json.dumps(PLAN_JSON_SCHEMA)
    assert "$ref" not in text
    assert "$defs" not in text
    assert '"title": "' not in text.replace('"title": {', "")
    assert PLAN_JSON_SCHEMA["required"] == ["summary", "steps"]
    step = PLAN_JSON_SCHEMA["properties"]["steps"]["items"]
    assert set(step["properties"]) == {"title", "detail", "files", "tests"}
    assert step["required"] == ["title"]
    assert step["properties"]["title"]["maxLength"] == 300


def test_instructions_describe_the_shape() -> None:
    text = plan_instructions()
    assert "exactly one JSON object" in text
    for key in ('"summary"', '"steps"', '"title"', '"detail"', '"files"', '"tests"', '"risks"'):
        assert key in text
    example = text.split("(the content is illustrative):\n", 1)[1].split("\n\nJSON Schema:")[0]
    assert parse_plan(example).steps[0].files == ["src/app/cli.py"]
    assert json.loads(text.rsplit("JSON Schema:\n", 1)[1]) == PLAN_JSON_SCHEMA


def test_markdown_rendering() -> None:
    md = render_plan_markdown(Plan.model_validate(PLAN))
    assert md == (
        "## Summary\n"
        "\n"
        "Cache parsed configs.\n"
        "\n"
        "## Steps\n"
        "\n"
        "1. **Add a cache**\n"
        "\n"
        "   Keep parsed configs keyed by path and mtime.\n"
        "\n"
        "   - Files:\n"
        "     - `src/app/config.py`\n"
        "   - Tests:\n"
        "     - tests/test_config.py\n"
        "\n"
        "2. **Invalidate on write**\n"
        "\n"
        "## Risks\n"
        "\n"
        "- Stale entries if mtime resolution is coarse.\n"
    )


def test_markdown_multiline_detail_backticks_and_no_risks() -> None:
    plan = Plan(
        summary="S",
        steps=[PlanStep(title="Multi\nline", detail="first\n\nsecond", files=["odd`name.py"])],
    )
    md = render_plan_markdown(plan)
    assert "1. **Multi line**\n\n   first\n\n   second\n" in md
    assert "     - ``odd`name.py``\n" in md
    assert md.endswith("## Risks\n\nNone identified.\n")
