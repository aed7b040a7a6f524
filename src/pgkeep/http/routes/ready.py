"""Readiness at /readyz: can this process take a backup right now? 503 lists what cannot.

Without credentials it says only which kinds of check pass and which fail (with several
targets, a kind fails when it fails for any): target names, versions, paths, free bytes,
hosts and users are for OWNER tokens or the metrics token, never for an API key.
Results are cached for a few seconds, so unauthenticated calls never cause a
write to storage each.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from pgkeep.core.models import Check
from pgkeep.errors import AuthError, Busy
from pgkeep.http.auth import require_owner

router = APIRouter(include_in_schema=False)


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    detailed = await _may_see_details(request)
    checks = await run_in_threadpool(_checks, request, detailed)
    failing = [c.name for c in checks if not c.ok and c.critical]
    body: dict[str, Any] = {
        "status": "not ready" if failing else "ready",
        "checks": [_check(c, detailed) for c in checks],
    }
    if failing:
        body |= {"error": "not ready", "details": "failing: " + ", ".join(failing)}
    return JSONResponse(
        body, status_code=503 if failing else 200, headers={"Cache-Control": "no-store"}
    )


def _checks(request: Request, detailed: bool) -> list[Check]:
    services = request.app.state.runtime.services
    if len(services) == 1:
        return list(next(iter(services.values())).readiness())
    every = [(name, c) for name, service in services.items() for c in service.readiness()]
    if detailed:
        return [Check(f"{name}.{c.name}", c.ok, c.details, c.critical) for name, c in every]
    kinds: dict[str, list[Check]] = {}
    for _, c in every:
        kinds.setdefault(c.name, []).append(c)
    return [_merged(kind, group) for kind, group in kinds.items()]


def _merged(kind: str, group: list[Check]) -> Check:
    """One kind of check over every target: failing (critically) when any fails (so)."""
    bad = [c for c in group if not c.ok]
    return Check(kind, not bad, "", any(c.critical for c in (bad or group)))


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
    except (AuthError, Busy):  # an API key, or a client refused for its failed attempts
        return False
    return True
