"""The API's view of core objects that have no request/response model of their own: jobs,
list items with their copies (and the list, cached per target), a backup's digest header."""

from __future__ import annotations

import base64
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from pgkeep import formats
from pgkeep.core import manifest_json, verdicts
from pgkeep.core.health import duration_ms
from pgkeep.core.jobs import Job
from pgkeep.core.models import Backup, RestoreResult
from pgkeep.core.service import BackupService
from pgkeep.http.schemas import BackupItem, RestoreResponse


def job_url(job: Job) -> str:
    return f"/api/backup/jobs/{job.id}"


def job_json(job: Job) -> dict[str, Any]:
    """A job as JSON (camelCase, as the spec's other bodies)."""
    p = job.progress
    return {
        "id": job.id,
        "kind": str(job.kind),
        "status": str(job.status),
        "target": job.target,
        "filename": job.filename,
        "startedAt": formats.iso_ms(job.started_at),
        "finishedAt": formats.iso_ms(job.finished_at) if job.finished_at else None,
        "progress": {
            "bytesWritten": p.bytes_written,
            "tablesDone": p.tables_done,
            "tablesTotal": p.tables_total,
            "percent": p.percent,
            "etaSeconds": p.eta_seconds,
        },
        "error": job.error,
        "details": job.details,
        "createdBy": job.created_by,
        "result": result_json(job),
    }


def result_json(job: Job) -> dict[str, Any] | None:
    """What a finished restore of this process restored (its tables, proven, and the foreign
    keys a table-level restore dropped), as the synchronous answer has it; else null."""
    if not isinstance(job.result, RestoreResult) or job.filename is None:
        return None
    body = RestoreResponse.of(job.filename, job.result).model_dump()
    return {k: v for k, v in body.items() if k != "success"}


def repr_digest(backup: Backup) -> dict[str, str]:
    """RFC 9530 `Repr-Digest`: the signed manifest's sha256 of the whole backup, so a client
    can check what it got (also when it got it in ranges)."""
    if not backup.signed or backup.manifest is None:
        return {}
    raw = bytes.fromhex(backup.manifest.sha256)
    return {"Repr-Digest": f"sha-256=:{base64.b64encode(raw).decode()}:"}


def backup_item(
    service: BackupService,
    backup: Backup,
    copies: list[list[Backup] | None],
    pinned: set[str] | frozenset[str] = frozenset(),
) -> dict[str, Any]:
    item = {
        **BackupItem.plain(backup),
        "target": service.target,
        "kind": backup.manifest.kind if backup.manifest else service.catalog.kind,
        "pinned": backup.name in pinned,
        "durationMs": duration_ms(backup),
        "verification": verification_json(verdicts.verdict(backup)),
    }
    if service.copier and service.copier.copies:
        item["copies"] = [
            {"store": c.store, "present": c.present, "verified": c.verified}
            for c in service.copier.status(backup.name, copies)
        ]
    return item


def verification_json(v: verdicts.Verdict) -> dict[str, Any]:
    return {
        "state": v.state,
        "at": formats.iso_ms(v.at) if v.at else None,
        "rowsProven": v.rows_proven,
        "check": v.check,
        "details": v.details,
        "source": v.source,
        "rehearsals": manifest_json.rehearsals_json(v.rehearsals),
    }


def list_body(request: Request, service: BackupService) -> bytes:
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
        pinned = service.catalog.pinned()
        items = [backup_item(service, b, copies, pinned) for b in backups]
        rendered = JSONResponse({"success": True, "backups": items, "count": len(items)}).body
        cached = bodies[service.target] = (key, bytes(rendered))
    return bytes(cached[1])
