"""Readiness at /readyz: can this process take a backup right now? 503 lists what cannot."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from pgkeep.core.service import BackupService

router = APIRouter(include_in_schema=False)


@router.get("/readyz")
def readyz(request: Request) -> JSONResponse:
    service: BackupService = request.app.state.service
    checks = service.readiness()
    failing = [c.name for c in checks if not c.ok]
    body: dict[str, Any] = {
        "status": "not ready" if failing else "ready",
        "checks": [{"name": c.name, "ok": c.ok, "details": c.details} for c in checks],
    }
    if failing:
        body |= {"error": "not ready", "details": "failing: " + ", ".join(failing)}
    return JSONResponse(
        body, status_code=503 if failing else 200, headers={"Cache-Control": "no-store"}
    )
