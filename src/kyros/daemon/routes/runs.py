"""Runs: create, list, read, cancel, and the event stream (SSE)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import Response, StreamingResponse

from kyros.core.app import Core
from kyros.daemon.routes.deps import core
from kyros.daemon.sse import event_stream
from kyros.errors import InvalidInput
from kyros.protocol import (
    Applied,
    Approval,
    Discarded,
    Run,
    RunCreate,
    RunList,
    RunReview,
)
from kyros.statuses import RunStatus

router = APIRouter(prefix="/v1/runs", tags=["runs"])

RunId = Annotated[str, Query(max_length=64)]


#: A built-in kind or one a plugin added (the core says which exist: 400 listing them).
Kind = Annotated[
    str, Path(min_length=1, max_length=40, pattern=r"^[a-z][a-z0-9-]*$", examples=["plan"])
]


@router.post("/{kind}", response_model=Run, status_code=201)
async def create_run(kind: Kind, body: RunCreate, c: Annotated[Core, Depends(core)]) -> Run:
    """Queue a run of ``kind``: a built-in one or one a plugin added (an unknown kind is
    refused with 400, listing the kinds there are); it starts as soon as a worker is free."""
    params = body.model_dump(
        include={"plan_run", "target_run", "diff", "range", "until", "continue_run", "budget"},
        exclude_none=True,
    )
    run = await c.runs.create(
        kind,
        body.goal,
        body.workspace,
        model=body.model,
        api_base=body.api_base,
        agent=body.agent,
        params=params,
        choices=body.settings.model_dump(exclude_none=True) if body.settings else None,
    )
    return Run.model_validate(run)


@router.get("", response_model=RunList)
async def list_runs(
    c: Annotated[Core, Depends(core)],
    status: RunStatus | None = None,
    kind: Annotated[str | None, Query(max_length=40)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    before: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=64,
            pattern=r"^[A-Za-z0-9_-]+$",
            description="A run id: list the runs after it (the next page); see `next_before`.",
        ),
    ] = None,
) -> RunList:
    """Runs, newest first, a page of at most ``limit``; ``next_before`` continues the list."""
    if kind and kind not in c.runs.kinds:
        # Refused rather than an empty page: a typo must not read as "no such runs".
        kinds = c.runs.kinds
        accepted = ", ".join(f"'{k}'" for k in kinds[:-1]) + f" or '{kinds[-1]}'"
        raise InvalidInput(
            f"unknown run kind {kind!r}; kinds: {', '.join(kinds)}",
            detail=[
                {"loc": ["query", "kind"], "type": "enum", "msg": f"Input should be {accepted}"}
            ],
        )
    rows = await c.runs.list_runs(
        limit=limit,
        status=status.value if status else None,
        kind=kind or None,
        before=before,
    )
    return RunList(
        runs=[Run.model_validate(r) for r in rows],
        next_before=rows[-1]["id"] if len(rows) == limit else None,
    )


def _check_id(run_id: str) -> str:
    if len(run_id) > 64 or "\x00" in run_id:
        raise InvalidInput("run id is malformed")
    return run_id


#: ``GET`` paths under this prefix with one more segment are :func:`get_run`'s; the daemon
#: answers them in front of FastAPI's routing (``kyros.daemon.app.HotReads``).
RUN_PATH_PREFIX = f"{router.prefix}/"


async def run_json(c: Core, run_id: str) -> bytes:
    """The body of ``GET /v1/runs/{run_id}``: the run read, validated and serialized once
    (``model_dump_json()``'s bytes, without the round trip through ``str``)."""
    run = Run.model_validate(await c.runs.get(_check_id(run_id)))
    return Run.__pydantic_serializer__.to_json(run)


@router.get("/{run_id}", response_model=Run)
async def get_run(run_id: str, c: Annotated[Core, Depends(core)]) -> Response:
    """One run with its output."""
    # The hottest read of the API: serialize once here instead of validating twice.
    return Response(await run_json(c, run_id), media_type="application/json")


@router.post("/{run_id}/approve", response_model=Run)
async def approve_run(run_id: str, body: Approval, c: Annotated[Core, Depends(core)]) -> Run:
    """Answer a run waiting in ``needs_approval``: approve (optionally for every later action
    of the same class) or deny with a reason the model is told. The run resumes either way."""
    run = await c.runs.answer(
        _check_id(run_id), approve=body.approve, always=body.always, reason=body.reason
    )
    return Run.model_validate(run)


@router.post("/{run_id}/apply", response_model=Applied)
async def apply_run(run_id: str, c: Annotated[Core, Depends(core)]) -> Applied:
    """Bring an implement run's diff (a pipeline's latest) into the user's working tree.

    Refused (409) when a file it touches has uncommitted changes or the diff no longer applies;
    nothing is changed then. Once applied, the run's worktree is removed (the diff stays)."""
    return Applied.model_validate(await c.worktrees.apply(_check_id(run_id)))


@router.post("/{run_id}/discard", response_model=Discarded)
async def discard_run(run_id: str, c: Annotated[Core, Depends(core)]) -> Discarded:
    """Throw away a finished run's change (a pipeline's, all its stages'): its worktree and
    branch are removed, and it can no longer be applied (409 while the run is active)."""
    return Discarded.model_validate(await c.worktrees.discard(_check_id(run_id)))


@router.get("/{run_id}/review", response_model=RunReview)
async def review_run(run_id: str, c: Annotated[Core, Depends(core)]) -> RunReview:
    """A run's child runs, its quality assessments, its escalation steps and its model calls
    with its stages' (``usage``)."""
    return RunReview.model_validate(await c.runs.review(_check_id(run_id), with_usage=True))


@router.post("/{run_id}/cancel", response_model=Run)
async def cancel_run(run_id: str, c: Annotated[Core, Depends(core)]) -> Run:
    """Cancel a queued or running run."""
    return Run.model_validate(await c.runs.cancel(_check_id(run_id)))


@router.get(
    "/{run_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def run_events(
    run_id: str,
    request: Request,
    c: Annotated[Core, Depends(core)],
    last_event_id: Annotated[str | None, Header(max_length=32)] = None,
    after: Annotated[int | None, Query(ge=0, le=2**31)] = None,
    follow: bool = True,
) -> StreamingResponse:
    """The run's events as Server-Sent Events, ``id`` = sequence number.

    Resume with ``Last-Event-ID`` (or ``?after=``): the stream continues after that event with
    no gap and no duplicate. With ``follow=false`` it ends once the stored log is sent; otherwise
    it ends after the run's final event.
    """
    await c.runs.get(_check_id(run_id))  # 404 before the stream starts
    start = after or 0
    if last_event_id:
        if not last_event_id.strip().isdigit():
            raise InvalidInput("Last-Event-ID must be an event sequence number")
        start = max(start, int(last_event_id))
    return StreamingResponse(
        event_stream(c, run_id, start, follow=follow, app_state=request.app.state),
        media_type="text/event-stream",
        headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
    )
