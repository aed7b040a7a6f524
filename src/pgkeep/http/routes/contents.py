"""GET /api/backup/{name}/tables: what a backup holds, table by table, as its signed
manifest counted it while dumping (`rowCounts`): what a table-level restore can name.

Registered before the backup routes, with the same target resolution and limits.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from pgkeep.core.models import Backup
from pgkeep.core.selecting import schema_of
from pgkeep.errors import Conflict
from pgkeep.http.auth import Reader
from pgkeep.http.errors import documented
from pgkeep.http.routes.backups import Service

router = APIRouter(
    prefix="/api/backup",
    tags=["backups"],
    responses=documented(
        (400, "Invalid input, such as a name that is not a backup name"),
        (401, "No authorization token, or an invalid one"),
        (403, "Access denied (not OWNER role, or an API key without the scope or target)"),
        (404, "Backup not found"),
        (409, "The backup has no signed row counts (from before them, globals, unsigned)"),
    ),
)


def row_counts(backup: Backup) -> dict[str, int]:
    """The signed manifest's row counts; Conflict naming why a backup has none to offer."""
    manifest = backup.manifest
    if not backup.signed or manifest is None:
        raise Conflict(
            f"backup {backup.name!r} has no signed manifest ({backup.trust})",
            "its tables cannot be listed or restored one by one",
        )
    if manifest.row_counts is None:
        what = "a globals backup" if manifest.kind == "globals" else "made without row counts"
        raise Conflict(
            f"backup {backup.name!r} has no row counts in its manifest ({what})",
            "its tables cannot be listed or restored one by one; restore the whole backup",
        )
    return manifest.row_counts


@router.get("/{filename:path}/tables")
async def backup_tables(filename: str, service: Service, actor: Reader) -> dict[str, Any]:
    """Each table (`schema.table`, as a table-level restore names it) with the rows the dump
    held, and the schemas they are in; read from the signed manifest, never the dump."""
    backup = await run_in_threadpool(service.catalog.get, filename)
    counts = row_counts(backup)
    tables = [{"name": name, "rows": rows} for name, rows in sorted(counts.items())]
    schemas = sorted({schema_of(name) for name in counts})
    return {
        "success": True,
        "filename": backup.name,
        "tables": tables,
        "schemas": schemas,
        "count": len(tables),
    }
