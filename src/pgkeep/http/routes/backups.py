"""The backup routes: the spec's create, list, download and delete, plus verify and restore.

Names arrive through `{filename:path}` so that every traversal attempt
(encoded slashes included) reaches name validation and gets a 400, not a
routing 404.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from pgkeep import formats
from pgkeep.core import pipeline
from pgkeep.core.jobs import Job
from pgkeep.core.models import Backup
from pgkeep.core.service import BackupService
from pgkeep.errors import PgkeepError
from pgkeep.http import ranges
from pgkeep.http.auth import DownloadAccess, Owner
from pgkeep.http.errors import documented, error_response
from pgkeep.http.schemas import (
    BackupItem,
    CreateRequest,
    CreateResponse,
    DeleteResponse,
    DownloadLinkResponse,
    ListResponse,
    RestoreRequest,
    RestoreResponse,
    VerifyRequest,
    VerifyResponse,
)
from pgkeep.http.streaming import stream_range
from pgkeep.http.views import job_json, job_url

router = APIRouter(
    prefix="/api/backup",
    tags=["backups"],
    responses=documented(
        (400, "Invalid input, such as a name that is not a backup name"),
        (401, "No authorization token, or an invalid one"),
        (403, "Access denied (not OWNER role)"),
        (404, "Backup not found"),
        (500, "Server error"),
    ),
)
SOURCE_HEADER = "X-Pgkeep-Source"  # primary, or copy:NAME when the primary failed


TargetName = Annotated[
    str | None, Query(max_length=200, description="The target; default: the only one")
]


def get_service(request: Request, actor: Owner, target: TargetName = None) -> BackupService:
    """The target's service, resolved only for an authorized caller: an unknown target's
    400 names the others, which nobody without a token may learn."""
    service: BackupService = request.app.state.runtime.service(target)
    return service


def get_download_service(
    request: Request, actor: DownloadAccess, target: TargetName = None
) -> BackupService:
    """As `get_service`, for the download route's wider access (tickets, `?token=`)."""
    service: BackupService = request.app.state.runtime.service(target)
    return service


Service = Annotated[BackupService, Depends(get_service)]
DownloadService = Annotated[BackupService, Depends(get_download_service)]
AsyncFlag = Annotated[
    bool, Query(alias="async", description="Answer 202 with a job instead of waiting")
]
ACCEPTED: dict[int | str, dict[str, Any]] = {
    202: {"description": "Accepted: a job was started (with ?async=true)"}
}


def _wants_async(request: Request, flag: bool) -> bool:
    return flag or "respond-async" in request.headers.get("prefer", "").lower()


def _accepted(job: Job) -> JSONResponse:
    return JSONResponse(
        {"success": True, "job": job_json(job)},
        status_code=202,
        headers={"Location": job_url(job), "Cache-Control": "no-store"},
    )


def _outcome(service: BackupService, job: Job) -> Any:
    """Wait for a job started on behalf of a synchronous request; its result or its error."""
    job = service.jobs.wait(job.id)
    if isinstance(job.result, PgkeepError):
        raise job.result
    if job.result is None or isinstance(job.result, BaseException):
        raise PgkeepError(job.error or "the job failed", job.details)
    return job.result


@router.post(
    "/create",
    response_model=CreateResponse,
    responses={**documented((409, "A backup is already running")), **ACCEPTED},
)
def create_backup(
    request: Request,
    service: Service,
    actor: Owner,
    body: CreateRequest | None = None,
    run_async: AsyncFlag = False,
) -> Any:
    options = (body or CreateRequest()).options(service.creating.defaults)
    job = service.start_create(options, actor)
    if _wants_async(request, run_async):
        return _accepted(job)
    return CreateResponse.of(_outcome(service, job))


ALL_TARGETS = "*"


@router.get("/list", response_model=ListResponse)
def list_backups(
    request: Request,
    actor: Owner,
    target: Annotated[
        str | None, Query(max_length=200, description="a target, or * for every target's")
    ] = None,
) -> Response:
    """Newest first. With ?target=*, every target's backups, each with its `target`."""
    runtime = request.app.state.runtime
    if target != ALL_TARGETS:
        return Response(_list_body(request, runtime.service(target)), media_type="application/json")
    items: list[dict[str, Any]] = []
    for service in runtime.services.values():
        copies = service.copier.listings() if service.copier else []
        items.extend(_item(service, b, copies) for b in service.catalog.list())
    items.sort(key=lambda item: (item["created"], item["filename"]), reverse=True)
    return JSONResponse({"success": True, "backups": items, "count": len(items)})


def _list_body(request: Request, service: BackupService) -> bytes:
    """The list as JSON, rebuilt only when a catalog hands out a new list (storage changed)."""
    backups = service.catalog.list()
    copies = service.copier.listings() if service.copier else []
    key = (backups, *copies)
    bodies = request.app.state.__dict__.setdefault("list_bodies", {})
    cached = bodies.get(service.target)
    if (
        cached is None
        or len(cached[0]) != len(key)
        or any(a is not b for a, b in zip(cached[0], key, strict=True))
    ):
        items = [_item(service, b, copies) for b in backups]
        rendered = JSONResponse({"success": True, "backups": items, "count": len(items)}).body
        cached = bodies[service.target] = (key, bytes(rendered))
    return bytes(cached[1])


def _item(
    service: BackupService, backup: Backup, copies: list[list[Backup] | None]
) -> dict[str, Any]:
    item = {**BackupItem.plain(backup), "target": service.target}
    if service.copier and service.copier.copies:
        item["copies"] = [
            {"store": c.store, "present": c.present, "verified": c.verified}
            for c in service.copier.status(backup.name, copies)
        ]
    return item


@router.get(
    "/download/{filename:path}",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/sql": {}}, "description": "The backup file"},
        206: {"content": {"application/sql": {}}, "description": "Part of the backup file"},
        **documented((416, "Range not satisfiable")),
    },
)
def download_backup(
    filename: str, request: Request, service: DownloadService, actor: DownloadAccess
) -> Response:
    backup, handle, source = service.open(filename, actor)
    size = backup.size_bytes
    headers = {
        "Content-Disposition": f'attachment; filename="{backup.name}"',
        "ETag": handle.etag,
        "Last-Modified": formats.http_date(backup.modified_at),
        "Accept-Ranges": "bytes",
        "Cache-Control": "no-store",
        SOURCE_HEADER: source,
    }
    if_range = request.headers.get("if-range")
    range_header = request.headers.get("range") if if_range in (None, handle.etag) else None
    try:
        span = ranges.parse_range(range_header, size)
    except ranges.Unsatisfiable:
        handle.close()
        return error_response(
            416,
            "Range not satisfiable",
            f"backup is {size} bytes",
            {"Content-Range": f"bytes */{size}"},
        )
    start, end, status = (0, size, 200) if span is None else (*span, 206)
    if status == 206:
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    headers["Content-Length"] = str(end - start)
    media_type = pipeline.media_type(backup.format, backup.compression, encrypted=backup.encrypted)
    return StreamingResponse(
        stream_range(handle, start, end), status_code=status, media_type=media_type, headers=headers
    )


@router.post(
    "/{filename:path}/verify",
    response_model=VerifyResponse,
    responses=ACCEPTED,
)
def verify_backup(
    filename: str,
    request: Request,
    service: Service,
    actor: Owner,
    body: VerifyRequest | None = None,
    run_async: AsyncFlag = False,
) -> Any:
    restore = (body or VerifyRequest()).restore
    job = service.start_verify(filename, restore=restore, actor=actor)
    if _wants_async(request, run_async):
        return _accepted(job)
    result = VerifyResponse.of(filename, _outcome(service, job))
    return JSONResponse(result.model_dump(), headers={SOURCE_HEADER: result.source})


@router.post(
    "/{filename:path}/restore",
    response_model=RestoreResponse,
    responses=documented(
        (409, "The target database exists (and replace was not confirmed)"),
        (422, "The backup failed its integrity check; nothing was restored"),
    )
    | ACCEPTED,
)
def restore_backup(
    filename: str,
    body: RestoreRequest,
    request: Request,
    service: Service,
    actor: Owner,
    run_async: AsyncFlag = False,
) -> Any:
    job = service.start_restore(
        filename, body.targetDatabase, replace=body.replace, confirm=body.confirm, actor=actor
    )
    if _wants_async(request, run_async):
        return _accepted(job)
    result = RestoreResponse.of(filename, _outcome(service, job))
    return JSONResponse(result.model_dump(), headers={SOURCE_HEADER: result.source})


@router.post("/download-link/{filename:path}", response_model=DownloadLinkResponse)
def download_link(filename: str, request: Request, service: Service, actor: Owner) -> Any:
    backup = service.catalog.grant_download(filename, actor)
    ticket, expires = request.app.state.tickets.issue(service.target, backup.name, actor.who)
    target = urlencode({"target": service.target})
    return DownloadLinkResponse(
        url=f"/api/backup/download/{backup.name}?{target}&ticket={ticket}",
        expiresAt=formats.iso_ms(datetime.fromtimestamp(expires, UTC)),
    )


@router.delete(
    "/{filename:path}",
    response_model=DeleteResponse,
    responses=documented((409, "The backup is pinned")),
)
def delete_backup(filename: str, service: Service, actor: Owner) -> DeleteResponse:
    service.catalog.delete(filename, actor)
    return DeleteResponse(filename=filename)
