"""Keeping backups: pins, labels and the retention preview.

Registered before the catch-all `DELETE /api/backup/{filename:path}`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from pgkeep.http.auth import Pinner, Reader
from pgkeep.http.errors import documented
from pgkeep.http.overview import policy_json
from pgkeep.http.routes.backups import Service
from pgkeep.http.schemas import LabelRequest
from pgkeep.http.views import backup_item

SCAN_PAGE = 1000
router = APIRouter(
    prefix="/api/backup",
    tags=["keeping"],
    responses=documented(
        (400, "Invalid input, such as a name that is not a backup name"),
        (401, "No authorization token, or an invalid one"),
        (403, "Access denied (not OWNER role, or an API key without the scope or target)"),
        (404, "Backup not found"),
    ),
)


@router.get("/retention/preview")
def retention_preview(actor: Reader, service: Service) -> dict[str, Any]:
    """What the retention policy would delete now, and why; deletes nothing."""
    decisions = service.catalog.retention_plan()

    def row(d: Any) -> dict[str, Any]:
        return {"filename": d.backup.name, "reasons": list(d.reasons)}

    return {
        "success": True,
        "policy": policy_json(service.catalog.policy),
        "delete": [row(d) for d in decisions if not d.keep],
        "keep": [row(d) for d in decisions if d.keep],
    }


@router.post("/{filename:path}/pin")
def pin_backup(filename: str, actor: Pinner, service: Service) -> dict[str, Any]:
    backup = service.catalog.pin(filename, actor)
    return {"success": True, "filename": backup.name, "pinned": True}


@router.delete("/{filename:path}/pin")
def unpin_backup(filename: str, actor: Pinner, service: Service) -> dict[str, Any]:
    backup = service.catalog.unpin(filename, actor)
    return {"success": True, "filename": backup.name, "pinned": False}


@router.patch("/{filename:path}")
def label_backup(
    filename: str, body: LabelRequest, actor: Pinner, service: Service
) -> dict[str, Any]:
    """Merge labels (RFC 7396: a string sets one, null removes it) into the backup's signed
    manifest and its copies'; answers the backup as listed."""
    backup = service.label(filename, body.labels, actor)
    copies = service.copier.listings() if service.copier else []
    pinned = service.catalog.pinned()
    return {"success": True, **backup_item(service, backup, copies, pinned)}
