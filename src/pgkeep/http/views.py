"""The API's view of core objects that have no request/response model of their own: jobs."""

from __future__ import annotations

from typing import Any

from pgkeep import formats
from pgkeep.core.jobs import Job


def job_url(job: Job) -> str:
    return f"/api/backup/jobs/{job.id}"


def job_json(job: Job) -> dict[str, Any]:
    """A job as JSON (camelCase, as the spec's other bodies)."""
    p = job.progress
    return {
        "id": job.id,
        "kind": str(job.kind),
        "status": str(job.status),
        "target": job.target,
        "filename": job.filename,
        "startedAt": formats.iso_ms(job.started_at),
        "finishedAt": formats.iso_ms(job.finished_at) if job.finished_at else None,
        "progress": {
            "bytesWritten": p.bytes_written,
            "tablesDone": p.tables_done,
            "tablesTotal": p.tables_total,
            "percent": p.percent,
            "etaSeconds": p.eta_seconds,
        },
        "error": job.error,
        "details": job.details,
        "createdBy": job.created_by,
    }
