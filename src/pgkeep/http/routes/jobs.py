"""Jobs: list, inspect, cancel, and watch one as Server-Sent Events."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from pgkeep.core.jobs import job_json
from pgkeep.http.auth import Owner
from pgkeep.http.errors import documented
from pgkeep.http.routes.backups import Service

router = APIRouter(
    prefix="/api/backup/jobs",
    tags=["jobs"],
    responses=documented(
        (401, "No authorization token, or an invalid one"),
        (403, "Access denied (not OWNER role)"),
        (404, "Job not found"),
    ),
)
EVENT_INTERVAL_SECONDS = 0.5


@router.get("")
def list_jobs(service: Service, principal: Owner) -> dict[str, Any]:
    jobs = [job_json(j) for j in service.jobs.list()]
    return {"success": True, "jobs": jobs, "count": len(jobs)}


@router.get("/{job_id}")
def get_job(job_id: str, service: Service, principal: Owner) -> dict[str, Any]:
    return {"success": True, "job": job_json(service.jobs.get(job_id))}


@router.delete("/{job_id}", responses=documented((409, "The job has already finished")))
def cancel_job(job_id: str, service: Service, principal: Owner) -> dict[str, Any]:
    return {"success": True, "job": job_json(service.jobs.cancel(job_id))}


@router.get(
    "/{job_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "progress events"}},
)
async def job_events(
    job_id: str, request: Request, service: Service, principal: Owner
) -> StreamingResponse:
    """`progress` events at most every 0.5 s while the job changes, then one `end` event."""
    service.jobs.get(job_id)

    async def events() -> AsyncIterator[bytes]:
        seen = -1
        while True:
            version = service.jobs.version
            job = service.jobs.get(job_id)
            if job.status.finished:
                yield _event("end", job_json(job))
                return
            if version != seen:
                seen = version
                yield _event("progress", job_json(job))
            if await request.is_disconnected():
                return
            await asyncio.sleep(EVENT_INTERVAL_SECONDS)
            # Wake early when the job finishes, so the final event is not delayed.
            await run_in_threadpool(service.jobs.wait, job_id, 0.0)

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def _event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()
