"""The backup routes: the spec's create, list, download and delete, plus verify and restore.

Names arrive through `{filename:path}` so that every traversal attempt
(encoded slashes included) reaches name validation and gets a 400, not a
routing 404.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response, StreamingResponse

from pgkeep import formats
from pgkeep.core.models import Compression, DumpFormat
from pgkeep.core.ports import ReadHandle
from pgkeep.core.service import BackupService
from pgkeep.http import ranges
from pgkeep.http.auth import Owner, OwnerOrQueryToken
from pgkeep.http.errors import error_response
from pgkeep.http.schemas import (
    BackupItem,
    CreateRequest,
    CreateResponse,
    DeleteResponse,
    ErrorBody,
    ListResponse,
    RestoreRequest,
    RestoreResponse,
    VerifyRequest,
    VerifyResponse,
)


def _errors(*codes: tuple[int, str]) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorBody, "description": text} for code, text in codes}


router = APIRouter(
    prefix="/api/backup",
    tags=["backups"],
    responses=_errors(
        (400, "Invalid input, such as a name that is not a backup name"),
        (401, "No authorization token, or an invalid one"),
        (403, "Access denied (not OWNER role)"),
        (404, "Backup not found"),
        (500, "Server error"),
    ),
)
CONTENT_TYPES = {
    Compression.GZIP: "application/gzip",
    Compression.ZSTD: "application/zstd",
}


def get_service(request: Request) -> BackupService:
    service: BackupService = request.app.state.service
    return service


Service = Annotated[BackupService, Depends(get_service)]


@router.post(
    "/create",
    response_model=CreateResponse,
    responses=_errors((409, "A backup is already running")),
)
def create_backup(
    service: Service, principal: Owner, body: CreateRequest | None = None
) -> CreateResponse:
    options = (body or CreateRequest()).options(service.defaults)
    return CreateResponse.of(service.create(options, created_by=principal.sub))


@router.get("/list", response_model=ListResponse)
def list_backups(service: Service, principal: Owner) -> ListResponse:
    backups = [BackupItem.of(b) for b in service.list()]
    return ListResponse(backups=backups, count=len(backups))


@router.get(
    "/download/{filename:path}",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/sql": {}}, "description": "The backup file"},
        206: {"content": {"application/sql": {}}, "description": "Part of the backup file"},
        **_errors((416, "Range not satisfiable")),
    },
)
def download_backup(
    filename: str, request: Request, service: Service, principal: OwnerOrQueryToken
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
    responses=_errors((409, "Conflict")),
)
def verify_backup(
    filename: str, service: Service, principal: Owner, body: VerifyRequest | None = None
) -> VerifyResponse:
    verification = service.verify(filename, restore=(body or VerifyRequest()).restore)
    return VerifyResponse.of(filename, verification)


@router.post(
    "/{filename:path}/restore",
    response_model=RestoreResponse,
    responses=_errors(
        (409, "The target database exists (and replace was not confirmed)"),
        (422, "The backup failed its integrity check; nothing was restored"),
    ),
)
def restore_backup(
    filename: str, body: RestoreRequest, service: Service, principal: Owner
) -> RestoreResponse:
    result = service.restore(
        filename, body.targetDatabase, replace=body.replace, confirm=body.confirm
    )
    return RestoreResponse.of(filename, result)


@router.delete("/{filename:path}", response_model=DeleteResponse)
def delete_backup(filename: str, service: Service, principal: Owner) -> DeleteResponse:
    service.delete(filename)
    return DeleteResponse(filename=filename)


def _stream(handle: ReadHandle, start: int, end: int) -> Iterator[bytes]:
    try:
        yield from handle.iter_range(start, end)
    finally:
        handle.close()
