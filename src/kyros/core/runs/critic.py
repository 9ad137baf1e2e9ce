"""The critic run: a second model judges a change and writes a quality assessment.

The diff comes from a run (an implement run, or a pipeline's latest implement stage), from the
request itself, or from a git range in the workspace. The verdict is validated like a plan: a
malformed answer is sent back once with the exact problem.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from kyros.core.ai.demo import DEMO_BANNER
from kyros.core.ai.models import ResolvedModel
from kyros.core.jobs.handlers import JobContext
from kyros.core.runs.executor import RunExecutor
from kyros.core.runs.plan_output import describe_validation_error, json_objects
from kyros.core.store import events as events_repo
from kyros.core.store import quality as quality_repo
from kyros.core.store import threads as threads_repo
from kyros.core.workspace.gitexec import run_git
from kyros.errors import InvalidInput, KyrosError

#: Diffs longer than this are cut (with a note) before they reach the model.
MAX_DIFF_CHARS = 200_000
#: Score at or above which a verdict without an explicit one counts as a pass.
PASS_SCORE = 70


class CriticInvalid(KyrosError):
    """The critic's answer is not a valid assessment."""

    code = "assessment_invalid"


class _Finding(BaseModel):
    severity: Literal["info", "minor", "major", "critical"]
    file: str | None = None
    line: int | None = Field(default=None, ge=0)
    message: str = Field(min_length=1)


class Verdict(BaseModel):
    """What the critic must answer with."""

    score: int = Field(ge=0, le=100)
    verdict: Literal["pass", "revise", "fail"]
    summary: str
    findings: list[_Finding] = Field(default_factory=list)


INSTRUCTIONS = (
    "You are a demanding code reviewer. Judge the change below against its goal: correctness "
    "first, then tests, security, and clarity. Answer with ONE JSON object and nothing else:\n"
    '{"score": 0-100, "verdict": "pass" | "revise" | "fail", "summary": "two sentences", '
    '"findings": [{"severity": "info" | "minor" | "major" | "critical", "file": "path or null", '
    '"line": number or null, "message": "what is wrong and how to fix it"}]}\n'
    "Use pass when the change can land as is, revise when it is on the right track but needs "
    "the listed fixes, fail when the approach is wrong."
)


def parse_verdict(text: str) -> Verdict:
    """The assessment in a model's reply, or :class:`CriticInvalid` saying what to fix."""
    objects, error = json_objects(text)
    candidates = [o for o in objects if "verdict" in o or "score" in o] or objects
    if not candidates:
        if error is not None:
            raise CriticInvalid(f"invalid JSON at line {error.lineno} column {error.colno}")
        raise CriticInvalid("no JSON object found; answer with one JSON object")
    try:
        return Verdict.model_validate(candidates[0])
    except ValidationError as exc:
        raise CriticInvalid(describe_validation_error(exc)) from None


def render_markdown(verdict: Verdict) -> str:
    lines = [f"## Review: {verdict.verdict} ({verdict.score}/100)", "", verdict.summary, ""]
    for f in verdict.findings:
        where = f"{f.file}:{f.line}" if f.file and f.line else (f.file or "")
        lines.append(f"- **{f.severity}** {where} {f.message}".replace("  ", " "))
    return "\n".join(lines).rstrip() + "\n"


def git_range_diff(workspace: Path, spec: str) -> str:
    """``git diff A..B`` in the workspace (allow-listed environment, no hooks)."""
    if spec.startswith("-"):
        raise InvalidInput("a range must name revisions, not options")
    done = run_git(workspace, "diff", "--no-color", "--no-ext-diff", spec, "--")
    return done.stdout.decode("utf-8", "replace")


def _request_note(run: dict[str, Any], target: str | None) -> str:
    """What the thread keeps of a review request (the diff is in the run and its target)."""
    params = run.get("params") or {}
    if target:
        what = f"run {target}"
    elif params.get("range"):
        what = f"the range {params['range']}"
    else:
        what = "a diff"
    return f"Review the change of {what}. Goal: {run['goal']}"


class CriticExecutor(RunExecutor):
    """The handler of ``critic`` jobs."""

    async def execute(self, run: dict[str, Any], ctx: JobContext) -> Any:
        diff, target = await self._diff(run)
        if not diff.strip():
            raise InvalidInput("there is no change to review: the diff is empty")
        verdict, resolved = await self._review(run, ctx, diff)
        resolved_name = resolved.name
        markdown = render_markdown(verdict)
        note = DEMO_BANNER if resolved.is_demo else None
        if note:
            markdown = f"> {note}\n\n{markdown}"
        output: dict[str, Any] = {
            "assessment": verdict.model_dump(),
            "markdown": markdown,
            "note": note,
            "target_run": target,
        }
        async with ctx.store.write() as conn:
            await ctx.fence(conn)
            row = await quality_repo.add_assessment(
                conn,
                run_id=run["id"],
                target_run_id=target,
                score=verdict.score,
                verdict=verdict.verdict,
                summary=verdict.summary,
                findings=[f.model_dump() for f in verdict.findings],
                model=resolved_name,
            )
            output["assessment_id"] = row["id"]
            assessed = await events_repo.append(
                conn,
                run["id"],
                "critic.assessment",
                {"score": verdict.score, "verdict": verdict.verdict, "id": row["id"]},
            )
            if run.get("thread_id"):
                # The request, not the whole diff: a continued conversation stays small.
                await threads_repo.append(
                    conn, run["thread_id"], "user", _request_note(run, target), run_id=run["id"]
                )
                await threads_repo.append(
                    conn, run["thread_id"], "assistant", markdown, run_id=run["id"]
                )
            events = await self.runs.end(conn, run, "succeeded", {"output": output}, output=output)
            await ctx.finish_in(conn, {"status": "succeeded"})
        self.runs.bus.publish([assessed, *events])
        return {"status": "succeeded"}

    async def _diff(self, run: dict[str, Any]) -> tuple[str, str | None]:
        params = run.get("params") or {}
        if params.get("diff"):
            return str(params["diff"]), None
        if params.get("range"):
            text = await asyncio.to_thread(git_range_diff, Path(run["workspace"]), params["range"])
            return text, None
        target = await self.runs.get(params["target_run"])
        if target["kind"] == "pipeline":
            kids = (await self.runs.review(target["id"]))["children"]
            stages = [k for k in kids if k["kind"] == "implement" and k["status"] == "succeeded"]
            if not stages:
                raise InvalidInput(f"pipeline {target['id']} has no finished implement stage")
            target = stages[-1]
        if target["status"] != "succeeded":
            raise InvalidInput(f"run {target['id']} is {target['status']}; it has no diff yet")
        return str((target.get("output") or {}).get("diff") or ""), target["id"]

    async def _review(
        self, run: dict[str, Any], ctx: JobContext, diff: str
    ) -> tuple[Verdict, ResolvedModel]:
        resolved = self.runs.resolve(run["model"], run["api_base"])
        backend = await asyncio.to_thread(self.backend)
        if len(diff) > MAX_DIFF_CHARS:
            diff = diff[:MAX_DIFF_CHARS] + "\n[… the rest of the diff was cut …]\n"
        # A pipeline's critic judges the change on its own, without the implementer's account;
        # a critic run of its own continues its conversation (--continue).
        earlier = (
            [] if run.get("parent_id") else await self.conversation(run, ctx, resolved, backend)
        )
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": INSTRUCTIONS},
            *earlier,
            {"role": "user", "content": f"## Goal\n{run['goal']}\n\n## Change\n```diff\n{diff}```"},
        ]
        problem = ""
        for attempt in (1, 2):
            # Also marks the call's start in the event log (see kyros.core.runs.lost_calls).
            await self.runs.emit(
                run["id"],
                "progress",
                {"phase": "model", "model": resolved.name, "attempt": attempt},
            )
            completion = await self.call_model(run, resolved, backend, messages, attempt=attempt)
            try:
                return parse_verdict(completion.text), resolved
            except CriticInvalid as exc:
                problem = exc.message
                await self.runs.emit(run["id"], "assessment.invalid", {"error": problem})
                messages += [
                    {"role": "assistant", "content": completion.text},
                    {
                        "role": "user",
                        "content": f"That was not a valid assessment: {problem}\n"
                        "Answer again with the JSON object only.",
                    },
                ]
        raise CriticInvalid(f"the critic's answer was invalid twice; last problem: {problem}")
