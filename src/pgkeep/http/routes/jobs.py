"""Jobs: list, inspect, cancel, and watch one as Server-Sent Events."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from pgkeep.core.credentials import Credential
from pgkeep.core.jobs import Job, JobKind, JobStatus
from pgkeep.core.runner import JobRunner
from pgkeep.errors import NotFound
from pgkeep.http.access import visible
from pgkeep.http.auth import Caller, Reader, actor_of
from pgkeep.http.errors import documented
from pgkeep.http.views import job_json

router = APIRouter(
    prefix="/api/backup/jobs",
    tags=["jobs"],
    responses=documented(
        (400, "Invalid request"),
        (401, "No authorization token, or an invalid one"),
        (403, "Access denied (not OWNER role, or an API key without the scope)"),
        (404, "Job not found"),
    ),
)
EVENT_INTERVAL_SECONDS = 0.5


def _jobs(request: Request) -> JobRunner:
    jobs: JobRunner = request.app.state.runtime.jobs
    return jobs


@router.get("")
def list_jobs(
    request: Request,
    actor: Reader,
    status: Annotated[JobStatus | None, Query()] = None,
    kind: Annotated[JobKind | None, Query()] = None,
    target: Annotated[str | None, Query(max_length=200)] = None,
) -> dict[str, Any]:
    """Every job of every target and instance the caller may see, most recent first;
    filtered by `status`, `kind` and `target` when given."""
    jobs = [
        job_json(j)
        for j in _jobs(request).list()
        if visible(request, j.target)
        and (status is None or j.status is status)
        and (kind is None or j.kind is kind)
        and (target is None or j.target == target)
    ]
    return {"success": True, "jobs": jobs, "count": len(jobs)}


@router.get("/{job_id}")
def get_job(job_id: str, request: Request, actor: Reader) -> dict[str, Any]:
    return {"success": True, "job": job_json(_visible_job(request, job_id))}


SCOPE_OF_KIND = {
    JobKind.CREATE: "backups:create",
    JobKind.VERIFY: "backups:verify",
    JobKind.RESTORE: "backups:restore",
}


@router.delete("/{job_id}", responses=documented((409, "The job has already finished")))
def cancel_job(job_id: str, request: Request, credential: Caller) -> dict[str, Any]:
    """Needs the scope of the job's kind (backups:create for a create, ...)."""
    job = _visible_job(request, job_id)
    credential.require(SCOPE_OF_KIND[job.kind])
    actor = actor_of(request, credential)
    return {"success": True, "job": job_json(_jobs(request).cancel(job_id, actor))}


def _visible_job(request: Request, job_id: str) -> Job:
    """The job, or 404 for one of a target the key may not see (as for an unknown id)."""
    job = _jobs(request).get(job_id)
    credential: Credential = request.state.credential
    if not credential.allows(job.target):
        raise NotFound(f"job {job_id[:64]!r} not found")
    return job


@router.get(
    "/{job_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "progress events"}},
)
async def job_events(job_id: str, request: Request, actor: Reader) -> StreamingResponse:
    """`progress` events at most every 0.5 s while the job changes, then one `end` event.
    A job of another instance is followed through the control database."""
    jobs = _jobs(request)
    await run_in_threadpool(_visible_job, request, job_id)

    async def events() -> AsyncIterator[bytes]:
        seen: dict[str, Any] | None = None
        while True:
            job = await run_in_threadpool(jobs.get, job_id)
            body = job_json(job)
            if job.status.finished:
                yield _event("end", body)
                return
            if body != seen:
                seen = body
                yield _event("progress", body)
            if await request.is_disconnected():
                return
            await asyncio.sleep(EVENT_INTERVAL_SECONDS)
            # Wake early when the job finishes, so the final event is not delayed.
            await run_in_threadpool(jobs.wait, job_id, 0.0)

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def _event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()
