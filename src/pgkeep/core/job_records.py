"""Job records kept as one JSON object in storage, so a restart knows what was interrupted."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from pgkeep import formats
from pgkeep.core.control import Progress
from pgkeep.core.jobs import Job, JobKind, JobStatus
from pgkeep.core.ports import Storage
from pgkeep.errors import NotFound, PgkeepError

logger = logging.getLogger(__name__)

JOBS_OBJECT = "pgkeep-jobs.json"


class StoredJobRecords:
    def __init__(self, storage: Storage) -> None:
        self._storage = storage

    def load(self) -> list[Job]:
        try:
            handle = self._storage.open_read(JOBS_OBJECT)
        except NotFound:
            return []
        except PgkeepError as exc:
            logger.error("cannot read job records: %s", exc.message)
            return []
        try:
            records = json.loads(b"".join(handle.iter_range(0, handle.info.size_bytes)))
            return [_from_record(r) for r in records]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            logger.error("ignoring unreadable job records: %s", exc)
            return []
        finally:
            handle.close()

    def save(self, jobs: list[Job]) -> None:
        self._storage.put(JOBS_OBJECT, json.dumps([_record(j) for j in jobs]).encode())


def _record(job: Job) -> dict[str, Any]:
    p = job.progress
    return {
        "id": job.id,
        "kind": str(job.kind),
        "status": str(job.status),
        "target": job.target,
        "filename": job.filename,
        "startedAt": formats.iso_ms(job.started_at),
        "finishedAt": formats.iso_ms(job.finished_at) if job.finished_at else None,
        "progress": [p.bytes_written, p.tables_done, p.tables_total, p.percent, p.eta_seconds],
        "error": job.error,
        "details": job.details,
        "createdBy": job.created_by,
    }


def _from_record(r: dict[str, Any]) -> Job:
    p = r["progress"]
    if isinstance(p, dict):  # records written before 0.2
        p = [p["bytesWritten"], p["tablesDone"], p["tablesTotal"], p["percent"], p["etaSeconds"]]
    return Job(
        id=str(r["id"]),
        kind=JobKind(r["kind"]),
        status=JobStatus(r["status"]),
        filename=r["filename"],
        started_at=_time(r["startedAt"]),
        created_by=str(r.get("createdBy", "")),
        finished_at=_time(r["finishedAt"]) if r["finishedAt"] else None,
        progress=Progress(*p),
        error=r["error"],
        details=str(r.get("details", "")),
        target=str(r.get("target", "")),
    )


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
