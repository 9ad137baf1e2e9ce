"""A run's results as Markdown: its output (plan, summary, review) and the critic's findings."""

from __future__ import annotations

from typing import Any


def output_markdown(run: dict[str, Any]) -> str:
    """What the run produced, or why it has nothing (yet)."""
    output = run.get("output") or {}
    status = run["status"]
    if status == "needs_approval":
        return "_Waiting for approval: the result comes when the run goes on._"
    if status in ("failed", "cancelled", "budget_exhausted"):
        return f"**Run {status}.**\n\n{run.get('error') or ''}"
    if not output:
        return "_No result yet._"
    if run["kind"] == "implement":
        files = output.get("files") or []
        text = (output.get("summary") or "").strip() or "_The agent left no summary._"
        text += f"\n\n**Changed {len(files)} file(s):** " + (
            ", ".join(f"`{f}`" for f in files) or "none"
        )
        if output.get("branch"):
            text += f"\n\nOn branch `{output['branch']}`."
        return text
    if run["kind"] == "pipeline":
        text = f"Pipeline ended after the **{output.get('stage')}** stage: {output.get('note')}."
        assessment = output.get("assessment")
        if assessment:
            text += f"\n\nReview: **{assessment['verdict']}** ({assessment['score']}/100)."
        return text
    return str(output.get("markdown") or "")


def review_markdown(review: dict[str, Any] | None) -> str:
    """The stages, the critic's assessments with their findings, and the escalation steps."""
    if not review:
        return "_No review._"
    parts: list[str] = []
    children = review.get("children") or []
    if children:
        parts.append("## Stages\n")
        parts += [f"- **{c['kind']}** `{c['id']}` — {c['status']}" for c in children]
        parts.append("")
    for a in review.get("assessments") or []:
        by = f" by {a['model']}" if a.get("model") else ""
        parts.append(f"## Review: {a['verdict']} · {a['score']}/100{by}\n")
        if a.get("summary"):
            parts.append(f"{a['summary']}\n")
        findings = a.get("findings") or []
        if findings:
            parts.append("| severity | where | finding |")
            parts.append("| --- | --- | --- |")
            for f in findings:
                where = f.get("file") or ""
                if where and f.get("line"):
                    where += f":{f['line']}"
                message = str(f.get("message", "")).replace("|", "\\|").replace("\n", " ")
                parts.append(f"| {f.get('severity')} | {where} | {message} |")
            parts.append("")
    escalations = review.get("escalations") or []
    if escalations:
        parts.append("## Escalation\n")
        parts += [f"{e['step']}. **{e['action']}** — {e['reason']}" for e in escalations]
    return "\n".join(parts) if parts else "_No review of this run._"


def attempts_markdown(review: dict[str, Any] | None) -> str:
    """The attempts of the run's job that ended without success: lost with a crashed worker,
    stalled alone, failed or released at shutdown (empty when every attempt went well)."""
    attempts = (review or {}).get("attempts") or []
    if not attempts:
        return ""
    parts = ["## Attempts\n", "| attempt | outcome | why |", "| --- | --- | --- |"]
    for a in attempts:
        outcome = a["outcome"] + (" (alone)" if a.get("isolated") else "")
        why = str(a.get("error") or "").replace("|", "\\|").replace("\n", " ")
        parts.append(f"| {a['attempt']} | {outcome} | {why} |")
    return "\n".join(parts)


def diff_of(run: dict[str, Any], review: dict[str, Any] | None) -> str | None:
    """The change: an implement run's diff, a pipeline's latest implement stage's."""
    if run["kind"] == "pipeline":
        stages = [
            c
            for c in (review or {}).get("children") or []
            if c["kind"] == "implement" and c["status"] == "succeeded"
        ]
        run = stages[-1] if stages else run
    diff = (run.get("output") or {}).get("diff")
    return None if diff is None else str(diff)
