"""Keeping backups: pins, the retention preview, and the audit log's pages.

Registered before the catch-all `DELETE /api/backup/{filename:path}`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from pgkeep.http.auth import Owner
from pgkeep.http.errors import documented
from pgkeep.http.routes.backups import Service

router = APIRouter(
    prefix="/api/backup",
    tags=["keeping"],
    responses=documented(
        (400, "Invalid input, such as a name that is not a backup name"),
        (401, "No authorization token, or an invalid one"),
        (403, "Access denied (not OWNER role)"),
        (404, "Backup not found"),
    ),
)


@router.get("/audit")
def audit_entries(
    request: Request,
    actor: Owner,
    offset: Annotated[int, Query(ge=0, le=10**12)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """The audit log, newest first, a page at a time."""
    entries, total = request.app.state.runtime.audit.page(offset, limit)
    return {
        "success": True,
        "entries": entries,
        "total": total,
        "offset": offset,
        "limit": limit,
    }


@router.get("/retention/preview")
def retention_preview(service: Service, actor: Owner) -> dict[str, Any]:
    """What the retention policy would delete now, and why; deletes nothing."""
    decisions = service.catalog.retention_plan()
    policy = service.catalog.policy

    def row(d: Any) -> dict[str, Any]:
        return {"filename": d.backup.name, "reasons": list(d.reasons)}

    return {
        "success": True,
        "policy": {
            "maxAgeDays": policy.max_age_days,
            "keepLast": policy.keep_last,
            "keepDaily": policy.keep_daily,
            "keepWeekly": policy.keep_weekly,
            "keepMonthly": policy.keep_monthly,
            "keepYearly": policy.keep_yearly,
            "minKeep": policy.min_keep,
        },
        "delete": [row(d) for d in decisions if not d.keep],
        "keep": [row(d) for d in decisions if d.keep],
    }


@router.post("/{filename:path}/pin")
def pin_backup(filename: str, service: Service, actor: Owner) -> dict[str, Any]:
    backup = service.catalog.pin(filename, actor)
    return {"success": True, "filename": backup.name, "pinned": True}


@router.delete("/{filename:path}/pin")
def unpin_backup(filename: str, service: Service, actor: Owner) -> dict[str, Any]:
    backup = service.catalog.unpin(filename, actor)
    return {"success": True, "filename": backup.name, "pinned": False}
