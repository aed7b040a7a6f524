"""GET /api/backup/targets: every target, its schedule, its newest backups and its health."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from pgkeep import formats
from pgkeep.core.schedule import next_run
from pgkeep.core.service import BackupService
from pgkeep.http.auth import Owner
from pgkeep.http.errors import documented
from pgkeep.runtime import Runtime

router = APIRouter(
    prefix="/api/backup",
    tags=["targets"],
    responses=documented(
        (401, "No authorization token, or an invalid one"),
        (403, "Access denied (not OWNER role)"),
    ),
)


@router.get("/targets")
async def list_targets(request: Request, actor: Owner) -> dict[str, Any]:
    """The source of truth for target names, with what each has and whether it answers."""
    runtime: Runtime = request.app.state.runtime
    rows = await run_in_threadpool(_rows, runtime)
    default = runtime.settings.default_target or (rows[0]["name"] if len(rows) == 1 else None)
    return {"success": True, "targets": rows, "count": len(rows), "defaultTarget": default}


def _rows(runtime: Runtime) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    return [_row(runtime, name, service, now) for name, service in sorted(runtime.services.items())]


def _row(runtime: Runtime, name: str, service: BackupService, now: datetime) -> dict[str, Any]:
    spec = runtime.specs[name]
    backups = service.catalog.list()
    newest = next((b for b in backups if b.signed), None)
    verified = [
        b
        for b in backups
        if b.manifest and b.manifest.verification and b.manifest.verification.verified
    ]
    schedule = spec.settings.schedule
    database = next((c for c in service.readiness() if c.name == "database"), None)
    return {
        "name": name,
        "kind": spec.kind,
        "server": spec.target.address,
        "database": spec.target.dbname if spec.kind == "database" else None,
        "prefix": spec.prefix,
        "discoveredBy": spec.server,
        "schedule": schedule,
        "nextRun": formats.iso_ms(next_run(schedule, now)) if schedule else None,
        "lastBackup": None
        if newest is None
        else {
            "filename": newest.name,
            "created": formats.iso_ms(newest.created_at),
            "sizeBytes": newest.size_bytes,
        },
        "lastVerified": None
        if not verified
        else {
            "filename": verified[0].name,
            "verifiedAt": formats.iso_ms(verified[0].manifest.verification.verified_at),  # type: ignore[union-attr]
        },
        "count": len(backups),
        "sizeBytes": sum(b.size_bytes for b in backups),
        "reachable": bool(database and database.ok),
        "gone": name in runtime.gone,
    }
