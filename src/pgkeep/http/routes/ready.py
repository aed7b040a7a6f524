"""Readiness at /readyz: can this process take a backup right now? 503 lists what cannot.

Without credentials it says only which checks pass and which fail: versions,
paths, free bytes, hosts and users are for OWNER tokens or the metrics token.
Results are cached for a few seconds, so unauthenticated calls never cause a
write to storage each.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from pgkeep.core.models import Check
from pgkeep.errors import AuthError
from pgkeep.http.auth import require_owner

router = APIRouter(include_in_schema=False)


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    checks = await run_in_threadpool(_checks, request)
    detailed = await _may_see_details(request)
    failing = [c.name for c in checks if not c.ok]
    body: dict[str, Any] = {
        "status": "not ready" if failing else "ready",
        "checks": [_check(c, detailed) for c in checks],
    }
    if failing:
        body |= {"error": "not ready", "details": "failing: " + ", ".join(failing)}
    return JSONResponse(
        body, status_code=503 if failing else 200, headers={"Cache-Control": "no-store"}
    )


def _checks(request: Request) -> list[Check]:
    services = request.app.state.runtime.services
    if len(services) == 1:
        return list(next(iter(services.values())).readiness())
    return [
        Check(f"{name}.{c.name}", c.ok, c.details)
        for name, service in services.items()
        for c in service.readiness()
    ]


def _check(check: Check, detailed: bool) -> dict[str, Any]:
    shown: dict[str, Any] = {"name": check.name, "ok": check.ok}
    if detailed:
        shown["details"] = check.details
    return shown


async def _may_see_details(request: Request) -> bool:
    if "authorization" not in request.headers:
        return False
    try:
        request.app.state.metrics.check_token(request)
        return True
    except AuthError:
        pass
    try:
        await require_owner(request)
    except AuthError:
        return False
    return True
