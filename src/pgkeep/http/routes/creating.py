"""POST /api/backup/create: the spec's create, with `?async=true` (202 and the job),
`?wait=SECONDS` (200 with the backup if it is done by then, else 202 and the job) and
`Idempotency-Key` (a retry gets the same job, never a second dump: core.idempotency)."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from starlette.concurrency import run_in_threadpool

from pgkeep.core import labels
from pgkeep.core.credentials import Credential
from pgkeep.core.idempotency import Idempotent, check_key, fingerprint
from pgkeep.core.jobs import Job, JobStatus
from pgkeep.core.models import Backup
from pgkeep.core.service import BackupService
from pgkeep.errors import NotFound
from pgkeep.http.auth import Creator
from pgkeep.http.errors import documented
from pgkeep.http.routes.backups import (
    ACCEPTED,
    AsyncFlag,
    Service,
    accepted,
    outcome,
    wants_async,
)
from pgkeep.http.schemas import CreateRequest, CreateResponse

router = APIRouter(
    prefix="/api/backup",
    tags=["backups"],
    responses=documented(
        (400, "Invalid input"),
        (401, "No authorization token, or an invalid one"),
        (403, "Access denied (not OWNER role, or an API key without backups:create or the target)"),
        (500, "Server error"),
    ),
)
MAX_WAIT_SECONDS = 600
POLL_SECONDS = 0.2  # how often a waiting create looks at its job
WaitSeconds = Annotated[
    int | None,
    Query(
        ge=0,
        le=MAX_WAIT_SECONDS,
        description="Wait up to this long: 200 with the backup, else 202 and the job",
    ),
]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=255,
        description="Repeats within 24 h with the same request get the same job",
    ),
]


@router.post(
    "/create",
    response_model=CreateResponse,
    responses={
        **documented(
            (404, "The backup an Idempotency-Key made was deleted since"),
            (409, "A backup is already running"),
            (422, "The Idempotency-Key was used with another request"),
        ),
        **ACCEPTED,
    },
)
async def create_backup(
    request: Request,
    actor: Creator,
    service: Service,
    body: CreateRequest | None = None,
    run_async: AsyncFlag = False,
    wait: WaitSeconds = None,
    idempotency_key: IdempotencyKey = None,
) -> Any:
    """Async, so a request waiting for its backup holds no worker thread: 45 repeats of one
    Idempotency-Key, each waiting for the same dump, had taken every thread (key and token
    checks, /readyz and every other request stopped until the dump ended)."""
    given = body or CreateRequest()
    options = given.options(service.creating.defaults)
    chosen = labels.checked(given.labels or {})

    def start() -> Job:
        return service.start_create(options, actor, chosen)

    if idempotency_key is None:
        job = await run_in_threadpool(start)
    else:
        key = check_key(idempotency_key)
        job = await run_in_threadpool(_once, request, key, body, start)
    if wait is not None:  # ?wait= takes precedence over ?async=true
        job = await _finished(service, job, float(wait))
        if not job.status.finished:
            return accepted(job)
    elif wants_async(request, run_async):
        return accepted(job)
    else:
        job = await _finished(service, job, None)
    return CreateResponse.of(await run_in_threadpool(_created, service, job))


async def _finished(service: BackupService, job: Job, timeout: float | None) -> Job:
    """The job once finished, or as it is when `timeout` runs out; polled on the event loop
    (a look at this process's own jobs is a dict's; another's, a read of the board)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while not job.status.finished:
        if deadline is not None and time.monotonic() >= deadline:
            break
        await asyncio.sleep(POLL_SECONDS)
        job = await run_in_threadpool(service.jobs.get, job.id)
    return job


def _once(request: Request, key: str, body: CreateRequest | None, start: Any) -> Job:
    credential: Credential = request.state.credential
    caller = f"key:{credential.key_id}" if credential.kind == "key" else f"sub:{credential.sub}"
    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    given = body.model_dump(mode="json", exclude_unset=True) if body else {}
    idempotent: Idempotent = request.app.state.idempotent
    return idempotent.start(caller, key, fingerprint(caller, "POST", path, given), start)


def _created(service: BackupService, job: Job) -> Backup:
    """The job's backup, once it is done: a job of another instance (or an earlier request)
    names its file, which the catalog reads."""
    job = service.jobs.wait(job.id)
    if job.status is JobStatus.SUCCEEDED and job.filename:
        # Read again, never the job's copy: a repeat after a delete must not answer a
        # backup that is gone as if it were there.
        try:
            return service.catalog.get(job.filename)
        except NotFound:
            raise NotFound(
                f"backup {job.filename!r} was deleted since it was made",
                "a repeat of this Idempotency-Key answers that backup; use a new key",
            ) from None
    backup: Backup = outcome(service, job)
    return backup
