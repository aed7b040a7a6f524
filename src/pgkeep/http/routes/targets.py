"""GET /api/backup/targets: every target, its schedule, its backups and its health, and the
fleet's totals (computed in http/overview.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from pgkeep.http.access import visible
from pgkeep.http.auth import Reader
from pgkeep.http.errors import documented
from pgkeep.http.overview import overview
from pgkeep.runtime import Runtime

router = APIRouter(
    prefix="/api/backup",
    tags=["targets"],
    responses=documented(
        (401, "No authorization token, or an invalid one"),
        (403, "Access denied (not OWNER role, or an API key without backups:read)"),
    ),
)


@router.get("/targets")
async def list_targets(request: Request, actor: Reader) -> dict[str, Any]:
    """The source of truth for target names, with what each has and whether it answers."""
    runtime: Runtime = request.app.state.runtime
    rows, totals = await run_in_threadpool(
        overview, runtime, datetime.now(UTC), lambda name: visible(request, name)
    )
    # What a request without ?target= reaches, and only for a caller that may see it.
    only = next(iter(runtime.services)) if len(runtime.services) == 1 else None
    default = runtime.settings.default_target or only
    if default is not None and not visible(request, default):
        default = None
    return {
        "success": True,
        "targets": rows,
        "count": len(rows),
        "defaultTarget": default,
        "totals": totals,
    }
