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
from pgkeep.core import labels, pipeline
from pgkeep.core.jobs import Job
from pgkeep.core.service import BackupService, Download
from pgkeep.errors import PgkeepError
from pgkeep.http import ranges
from pgkeep.http.access import one_target, service_for
from pgkeep.http.auth import (
    Caller,
    Deleter,
    DownloadAccess,
    Downloader,
    Reader,
    Restorer,
    Verifier,
)
from pgkeep.http.errors import documented, error_response
from pgkeep.http.schemas import (
    DeleteResponse,
    DownloadLinkResponse,
    ListResponse,
    RestoreRequest,
    RestoreResponse,
    VerifyRequest,
    VerifyResponse,
)
from pgkeep.http.streaming import RangeResponse
from pgkeep.http.views import backup_item, job_json, job_url, list_body, repr_digest

router = APIRouter(
    prefix="/api/backup",
    tags=["backups"],
    responses=documented(
        (400, "Invalid input, such as a name that is not a backup name"),
        (401, "No authorization token, or an invalid one"),
        (403, "Access denied (not OWNER role, or an API key without the scope or target)"),
        (404, "Backup not found"),
        (500, "Server error"),
    ),
)
SOURCE_HEADER = "X-Pgkeep-Source"  # primary, or copy:NAME when the primary failed


TargetName = Annotated[
    str | None, Query(max_length=200, description="The target; default: the only one")
]


def get_service(request: Request, credential: Caller, target: TargetName = None) -> BackupService:
    """The target's service, resolved only for an authorized caller: an unknown target's
    400 names the others, which nobody without a token may learn (nor a key for others)."""
    return service_for(request, credential, target)


def get_download_service(
    request: Request, actor: DownloadAccess, target: TargetName = None
) -> BackupService:
    """As `get_service`, for the download route's wider access (tickets, `?token=`)."""
    return service_for(request, request.state.credential, target)


Service = Annotated[BackupService, Depends(get_service)]
DownloadService = Annotated[BackupService, Depends(get_download_service)]
AsyncFlag = Annotated[
    bool, Query(alias="async", description="Answer 202 with a job instead of waiting")
]
ACCEPTED: dict[int | str, dict[str, Any]] = {
    202: {"description": "Accepted: a job was started (with ?async=true)"}
}


def wants_async(request: Request, flag: bool) -> bool:
    return flag or "respond-async" in request.headers.get("prefer", "").lower()


def accepted(job: Job) -> JSONResponse:
    return JSONResponse(
        {"success": True, "job": job_json(job)},
        status_code=202,
        headers={"Location": job_url(job), "Cache-Control": "no-store"},
    )


def outcome(service: BackupService, job: Job) -> Any:
    """Wait for a job started on behalf of a synchronous request; its result or its error."""
    job = service.jobs.wait(job.id)
    if isinstance(job.result, PgkeepError):
        raise job.result
    if job.result is None or isinstance(job.result, BaseException):
        raise PgkeepError(job.error or "the job failed", job.details)
    return job.result


ALL_TARGETS = "*"


@router.get("/list", response_model=ListResponse)
def list_backups(
    request: Request,
    credential: Caller,
    actor: Reader,
    target: Annotated[
        str | None, Query(max_length=200, description="a target, or * for every target's")
    ] = None,
    label: Annotated[
        list[str] | None, Query(max_length=300, description="KEY=VALUE: only backups with it")
    ] = None,
) -> Response:
    """Newest first. With ?target=*, every target's backups, each with its `target`; with
    ?label=KEY=VALUE (repeatable), only the backups carrying every such label."""
    runtime = request.app.state.runtime
    one_target(request)
    wanted = [labels.parse_filter(text) for text in label or ()]
    if target != ALL_TARGETS:
        service = service_for(request, credential, target)
        if not wanted:
            return Response(list_body(request, service), media_type="application/json")
        services = [service]
    else:
        services = [s for s in runtime.services.values() if credential.allows(s.target)]
    items: list[dict[str, Any]] = []
    for service in services:
        copies = service.copier.listings() if service.copier else []
        pinned = service.catalog.pinned()
        items.extend(
            backup_item(service, b, copies, pinned)
            for b in service.catalog.list()
            if labels.matches(b.manifest.labels if b.manifest else (), wanted)
        )
    items.sort(key=lambda item: (item["created"], item["filename"]), reverse=True)
    return JSONResponse({"success": True, "backups": items, "count": len(items)})


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
    download = service.open(filename, actor)
    handle = download.handle
    try:
        return _download(request, download)
    except BaseException:
        if handle is not None:  # a response that owns the handle closes it; until then, this
            handle.close()
        raise


def _download(request: Request, download: Download) -> Response:
    backup, handle = download.backup, download.handle
    size = backup.size_bytes
    headers = {
        "Content-Disposition": f'attachment; filename="{backup.name}"',
        "Last-Modified": formats.http_date(backup.modified_at),
        "Cache-Control": "no-store",
        SOURCE_HEADER: download.source,
        **repr_digest(backup),
    }
    media_type = pipeline.media_type(backup.format, backup.compression, encrypted=backup.encrypted)
    if handle is None:  # a copy: whole, its last chunk sent only once it matches the manifest
        assert download.reading is not None  # noqa: S101 (one or the other)
        headers["Content-Length"] = str(size)
        body = download.reading.stored()
        return StreamingResponse(body, media_type=media_type, headers=headers)
    headers |= {"ETag": handle.etag, "Accept-Ranges": "bytes"}
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
    return RangeResponse(
        handle, start, end, status_code=status, media_type=media_type, headers=headers
    )


@router.post(
    "/{filename:path}/verify",
    response_model=VerifyResponse,
    responses=ACCEPTED,
)
def verify_backup(
    filename: str,
    request: Request,
    actor: Verifier,
    service: Service,
    body: VerifyRequest | None = None,
    run_async: AsyncFlag = False,
) -> Any:
    restore = (body or VerifyRequest()).restore
    job = service.start_verify(filename, restore=restore, actor=actor)
    if wants_async(request, run_async):
        return accepted(job)
    result = VerifyResponse.of(filename, outcome(service, job))
    return JSONResponse(result.model_dump(), headers={SOURCE_HEADER: result.source})


@router.post(
    "/{filename:path}/restore",
    response_model=RestoreResponse,
    responses=documented(
        (409, "The target database exists (and replace was not confirmed)"),
        (422, "The backup failed its integrity check, or lacks a named table; nothing restored"),
    )
    | ACCEPTED,
)
def restore_backup(
    filename: str,
    body: RestoreRequest,
    request: Request,
    actor: Restorer,
    service: Service,
    run_async: AsyncFlag = False,
) -> Any:
    job = service.start_restore(
        filename,
        body.targetDatabase,
        replace=body.replace,
        confirm=body.confirm,
        actor=actor,
        selection=body.selection(),
    )
    if wants_async(request, run_async):
        return accepted(job)
    result = RestoreResponse.of(filename, outcome(service, job))
    return JSONResponse(result.model_dump(), headers={SOURCE_HEADER: result.source})


@router.post("/download-link/{filename:path}", response_model=DownloadLinkResponse)
def download_link(filename: str, request: Request, actor: Downloader, service: Service) -> Any:
    backup = service.catalog.grant_download(filename, actor)
    tickets = request.app.state.tickets
    ticket, expires = tickets.issue(service.target, backup.name, actor.who, actor.key_id)
    target = urlencode({"target": service.target})
    return DownloadLinkResponse(
        url=f"/api/backup/download/{backup.name}?{target}&ticket={ticket}",
        expiresAt=formats.iso_ms(datetime.fromtimestamp(expires, UTC)),
    )


@router.delete(
    "/{filename:path}",
    response_model=DeleteResponse,
    responses=documented(
        (409, "The backup is pinned"),
        (502, "Removed from some stores, not all (`stores` says which)"),
    ),
)
def delete_backup(filename: str, actor: Deleter, service: Service) -> DeleteResponse:
    stores = service.delete(filename, actor)
    return DeleteResponse(filename=filename, stores=stores)
