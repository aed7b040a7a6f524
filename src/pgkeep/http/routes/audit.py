"""GET /api/backup/audit: the audit trail, newest first, a page at a time, filtered by
action, target and who acted, with the keyed chain's verification."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from pgkeep.core.audit import Filter, Report, Trail, verify
from pgkeep.http.access import visible
from pgkeep.http.auth import AuditReader, Caller
from pgkeep.http.errors import documented

router = APIRouter(
    prefix="/api/backup",
    tags=["audit"],
    responses=documented(
        (401, "No authorization token, or an invalid one"),
        (403, "Access denied (not OWNER role, or an API key without audit:read)"),
    ),
)
Text = Annotated[str | None, Query(max_length=200)]


@router.get("/audit")
def audit_entries(
    request: Request,
    credential: Caller,
    actor: AuditReader,
    offset: Annotated[int, Query(ge=0, le=10**12)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    action: Text = None,
    target: Text = None,
    who: Annotated[str | None, Query(alias="actor", max_length=200)] = None,
    before: Annotated[int | None, Query(ge=1, le=10**12, description="only seq < before")] = None,
) -> dict[str, Any]:
    """The audit log, newest first, a page at a time; `total` counts what the filters
    keep. `chain` is the whole trail's verification (as `pgkeep audit verify`)."""
    trail: Trail = request.app.state.runtime.audit
    wanted = Filter(action, target, who, before)
    everything = trail.read()  # oldest first: the chain is checked over all of it
    report = verify(trail, trail.signer, trail.anchor, everything)
    limited = credential.targets is not None
    if wanted.empty and not limited:
        entries, total = trail.page(offset, limit)
    else:  # a key limited to some targets sees their entries only (not those of no target)
        kept = [
            e
            for e in reversed(everything)
            if wanted.keeps(e) and (not limited or visible(request, str(e.get("target"))))
        ]
        entries, total = kept[offset : offset + limit], len(kept)
    return {
        "success": True,
        "entries": entries,
        "total": total,
        "offset": offset,
        "limit": limit,
        "chain": _chain(report, limited),
    }


def _chain(report: Report, limited: bool) -> dict[str, Any]:
    if limited:  # the whole trail's verdict, nothing of other targets' entries
        said = "intact" if report.intact else "broken: an operator can see where"
        return {"ok": report.intact, "details": said, "entries": None, "notes": []}
    details = f"intact: {report.entries} entries" if report.intact else report.problem
    return {
        "ok": report.intact,
        "details": details,
        "entries": report.entries,
        "notes": list(report.notes),
    }
