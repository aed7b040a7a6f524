"""GET /api/backup/storage: every store, what it holds per target, what a copy is missing."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from pgkeep.http.access import visible
from pgkeep.http.auth import Reader
from pgkeep.http.errors import documented
from pgkeep.http.storage_view import stores

router = APIRouter(
    prefix="/api/backup",
    tags=["storage"],
    responses=documented(
        (401, "No authorization token, or an invalid one"),
        (403, "Access denied (not OWNER role)"),
    ),
)


@router.get("/storage")
async def list_stores(request: Request, actor: Reader) -> dict[str, Any]:
    """Each store; one that cannot be read is `ok: false` with its cause, never a failure.
    A key limited to some targets sees those targets' part of each store only."""
    runtime = request.app.state.runtime
    found = await run_in_threadpool(stores, runtime, lambda name: visible(request, name))
    return {"success": True, "stores": found}
