"""The backup routes: the spec's create, list, download and delete, plus verify and restore.

Names arrive through `{filename:path}` so that every traversal attempt
(encoded slashes included) reaches name validation and gets a 400, not a
routing 404.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from pgkeep import formats
from pgkeep.core.jobs import Job, job_json
from pgkeep.core.models import Compression, DumpFormat
from pgkeep.core.ports import ReadHandle
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
CHUNK_SIZE = 1024 * 1024  # downloads, measured: 256 KiB ~1.2 GB/s, 1 MiB ~2.5, 4 MiB ~2.7
CONTENT_TYPES = {
    Compression.GZIP: "application/gzip",
    Compression.ZSTD: "application/zstd",
}


def get_service(request: Request) -> BackupService:
    service: BackupService = request.app.state.service
    return service


Service = Annotated[BackupService, Depends(get_service)]
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
        headers={"Location": f"/api/backup/jobs/{job.id}", "Cache-Control": "no-store"},
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
    principal: Owner,
    body: CreateRequest | None = None,
    run_async: AsyncFlag = False,
) -> Any:
    options = (body or CreateRequest()).options(service.defaults)
    job = service.start_create(options, created_by=principal.sub)
    if _wants_async(request, run_async):
        return _accepted(job)
    return CreateResponse.of(_outcome(service, job))


@router.get("/list", response_model=ListResponse)
def list_backups(request: Request, service: Service, principal: Owner) -> Response:
    backups = service.list()
    cached = getattr(request.app.state, "list_body", None)
    if cached is None or cached[0] is not backups:  # the service hands out the same list
        items = [BackupItem.plain(b) for b in backups]  # until storage changes
        body = JSONResponse({"success": True, "backups": items, "count": len(items)}).body
        cached = request.app.state.list_body = (backups, body)
    return Response(cached[1], media_type="application/json")


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
    filename: str, request: Request, service: Service, principal: DownloadAccess
) -> Response:
    backup, handle = service.open(filename)
    size = backup.size_bytes
    headers = {
        "Content-Disposition": f'attachment; filename="{backup.name}"',
        "ETag": handle.etag,
        "Last-Modified": formats.http_date(backup.modified_at),
        "Accept-Ranges": "bytes",
        "Cache-Control": "no-store",
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
    media_type = CONTENT_TYPES.get(backup.compression, "application/sql")
    if backup.format is DumpFormat.CUSTOM:
        media_type = "application/octet-stream"
    return StreamingResponse(
        _stream(handle, start, end), status_code=status, media_type=media_type, headers=headers
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
    principal: Owner,
    body: VerifyRequest | None = None,
    run_async: AsyncFlag = False,
) -> Any:
    restore = (body or VerifyRequest()).restore
    job = service.start_verify(filename, restore=restore, created_by=principal.sub)
    if _wants_async(request, run_async):
        return _accepted(job)
    return VerifyResponse.of(filename, _outcome(service, job))


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
    principal: Owner,
    run_async: AsyncFlag = False,
) -> Any:
    job = service.start_restore(
        filename,
        body.targetDatabase,
        replace=body.replace,
        confirm=body.confirm,
        created_by=principal.sub,
    )
    if _wants_async(request, run_async):
        return _accepted(job)
    return RestoreResponse.of(filename, _outcome(service, job))


@router.post("/download-link/{filename:path}", response_model=DownloadLinkResponse)
def download_link(filename: str, request: Request, service: Service, principal: Owner) -> Any:
    backup = service.get(filename)
    ticket, expires = request.app.state.tickets.issue(backup.name, principal.sub)
    return DownloadLinkResponse(
        url=f"/api/backup/download/{backup.name}?ticket={ticket}",
        expiresAt=formats.iso_ms(datetime.fromtimestamp(expires, UTC)),
    )


@router.get("/audit")
def audit_entries(
    request: Request,
    principal: Owner,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """The audit log, newest first, a page at a time."""
    entries = list(reversed(request.app.state.audit.read()))
    return {
        "success": True,
        "entries": entries[offset : offset + limit],
        "total": len(entries),
        "offset": offset,
        "limit": limit,
    }


@router.get("/retention/preview")
def retention_preview(service: Service, principal: Owner) -> dict[str, Any]:
    """What the retention policy would delete now, and why; deletes nothing."""
    decisions = service.retention_plan()

    def row(d: Any) -> dict[str, Any]:
        return {"filename": d.backup.name, "reasons": list(d.reasons)}

    return {
        "success": True,
        "policy": {
            "maxAgeDays": service.retention.max_age_days,
            "keepLast": service.retention.keep_last,
            "keepDaily": service.retention.keep_daily,
            "keepWeekly": service.retention.keep_weekly,
            "keepMonthly": service.retention.keep_monthly,
            "keepYearly": service.retention.keep_yearly,
            "minKeep": service.retention.min_keep,
        },
        "delete": [row(d) for d in decisions if not d.keep],
        "keep": [row(d) for d in decisions if d.keep],
    }


@router.post("/{filename:path}/pin")
def pin_backup(filename: str, service: Service, principal: Owner) -> dict[str, Any]:
    service.pin(filename, by=principal.sub)
    return {"success": True, "filename": filename, "pinned": True}


@router.delete("/{filename:path}/pin")
def unpin_backup(filename: str, service: Service, principal: Owner) -> dict[str, Any]:
    service.unpin(filename)
    return {"success": True, "filename": filename, "pinned": False}


@router.delete(
    "/{filename:path}",
    response_model=DeleteResponse,
    responses=documented((409, "The backup is pinned")),
)
def delete_backup(filename: str, service: Service, principal: Owner) -> DeleteResponse:
    service.delete(filename)
    return DeleteResponse(filename=filename)


async def _stream(handle: ReadHandle, start: int, end: int) -> AsyncIterator[bytes]:
    """The range in 1 MiB chunks, closing the handle however the response ends.

    Chunks the page cache holds are read on the event loop (about 0.1 ms each);
    only those that would wait on the disk go to a worker thread. A thread hop
    per chunk cost a quarter of the throughput (measured: 1.7 against 2.4 GB/s).
    """
    try:
        offset = start
        while offset < end:
            size = min(CHUNK_SIZE, end - offset)
            chunk = handle.read_cached(offset, size)
            if chunk is None:
                chunk = await anyio.to_thread.run_sync(handle.read, offset, size)
            offset += len(chunk)
            yield chunk
    finally:
        handle.close()
