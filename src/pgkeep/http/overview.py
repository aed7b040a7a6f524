"""The fleet at a glance (GET /api/backup/targets): each target's status, last failure, last
test restore, size trend, stores and retention, and the fleet's totals.

Computed by core.health from what is recorded (manifests, job records, missed slots). Each
store is read on its own: one that is down is reported `ok: false` on the targets it
holds, and everything else still answers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pgkeep import formats
from pgkeep.core import health
from pgkeep.core.jobs import Job
from pgkeep.core.models import Backup
from pgkeep.core.retention import RetentionPolicy
from pgkeep.core.schedule import next_run
from pgkeep.core.service import BackupService
from pgkeep.errors import PgkeepError
from pgkeep.runtime import Runtime

logger = logging.getLogger(__name__)
PRIMARY = "primary"


@dataclass(frozen=True)
class StoreRead:
    """One store's listing for one target, or why it could not be read."""

    store: str
    backups: list[Backup] | None
    error: str | None
    where: str


def read_stores(service: BackupService) -> list[StoreRead]:
    """The primary store's listing, then each copy store's; a store that fails is noted."""
    stores = [(PRIMARY, service.catalog), *(service.copier.copies if service.copier else [])]
    reads = []
    for name, catalog in stores:
        try:
            reads.append(StoreRead(name, catalog.list(), None, catalog.storage.where))
        except PgkeepError as exc:
            error = f"{exc.message} {exc.details}".strip()
            reads.append(StoreRead(name, None, error, catalog.storage.where))
    return reads


def policy_json(policy: RetentionPolicy) -> dict[str, int]:
    return {
        "maxAgeDays": policy.max_age_days,
        "keepLast": policy.keep_last,
        "keepDaily": policy.keep_daily,
        "keepWeekly": policy.keep_weekly,
        "keepMonthly": policy.keep_monthly,
        "keepYearly": policy.keep_yearly,
        "minKeep": policy.min_keep,
    }


def overview(
    runtime: Runtime, now: datetime, visible: Callable[[str], bool] = lambda _: True
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every target's row the caller may see, by name, and those targets' totals (a key
    limited to some targets learns nothing of the others, not even their number)."""
    jobs: dict[str, list[Job]] = {}
    for job in runtime.jobs.list():
        jobs.setdefault(job.target, []).append(job)
    missed = _missed(runtime)
    rows, bytes_by_store = [], dict[str, int]()
    for name, service in sorted(runtime.services.items()):
        if not visible(name):
            continue
        reads = read_stores(service)
        server = runtime.specs[name].server
        facts_missed = missed.get(name, []) + (missed.get(server, []) if server else [])
        rows.append(_row(runtime, name, service, reads, jobs.get(name, []), facts_missed, now))
        for read in reads:
            total = sum(b.size_bytes for b in read.backups or [])
            bytes_by_store[read.store] = bytes_by_store.get(read.store, 0) + total
    totals = {"targets": len(rows)}
    for status in ("failing", "stale", "unreachable", "gone"):
        totals[status] = sum(1 for r in rows if r["status"] == status)
    totals["backups"] = sum(r["count"] for r in rows)
    return rows, {**totals, "bytes": bytes_by_store}


def _missed(runtime: Runtime) -> dict[str, list[health.Missed]]:
    try:
        return runtime.shared.missed.missed()
    except PgkeepError as exc:
        logger.warning("missed slots not readable: %s", exc.message)
        return {}


def _row(
    runtime: Runtime,
    name: str,
    service: BackupService,
    reads: list[StoreRead],
    jobs: list[Job],
    missed: list[health.Missed],
    now: datetime,
) -> dict[str, Any]:
    spec = runtime.specs[name]
    # The primary's listing; while it cannot be read, the first copy store's that can.
    backups = next((r.backups for r in reads if r.backups is not None), [])
    database = next((c for c in service.readiness() if c.name == "database"), None)
    stale_after = spec.settings.stale_after
    facts = health.Facts(
        backups=backups,
        jobs=jobs,
        missed=missed,
        gone=name in runtime.gone,
        reachable=bool(database and database.ok),
        stale_after=stale_after,
        first_seen=_first_seen(runtime, name, now) if stale_after and not backups else None,
        now=now,
        store_error=reads[0].error if reads else None,
    )
    schedule = spec.settings.schedule
    return {
        "name": name,
        "kind": spec.kind,
        "server": spec.target.address,
        "database": spec.target.dbname if spec.kind == "database" else None,
        "prefix": spec.prefix,
        "discoveredBy": spec.server,
        "schedule": schedule,
        "nextRun": formats.iso_ms(next_run(schedule, now)) if schedule else None,
        "lastBackup": _last_backup(backups),
        "lastVerified": _last_verified(backups),
        "count": len(backups),
        "sizeBytes": sum(b.size_bytes for b in backups),
        "reachable": facts.reachable,
        "gone": facts.gone,
        "status": str(health.status(facts)),
        "lastFailure": _failure(health.last_failure(facts)),
        "lastTestRestore": _test_restore(backups),
        "trend": [
            {
                "created": formats.iso_ms(b.created_at),
                "sizeBytes": b.size_bytes,
                "durationMs": health.duration_ms(b),
            }
            for b in health.trend(backups)
        ],
        "stores": [{"store": r.store, "ok": r.error is None, "error": r.error} for r in reads],
        "retention": policy_json(service.catalog.policy),
        "staleAfter": int(stale_after.total_seconds()) if stale_after else None,
    }


def _first_seen(runtime: Runtime, name: str, now: datetime) -> datetime | None:
    try:
        return runtime.shared.episodes.first_seen(name, now)
    except PgkeepError as exc:
        logger.warning("alert episodes not readable: %s", exc.message)
        return None


def _last_backup(backups: list[Backup]) -> dict[str, Any] | None:
    newest = next((b for b in backups if b.signed), None)
    if newest is None:
        return None
    return {
        "filename": newest.name,
        "created": formats.iso_ms(newest.created_at),
        "sizeBytes": newest.size_bytes,
    }


def _last_verified(backups: list[Backup]) -> dict[str, Any] | None:
    for b in backups:
        v = b.manifest.verification if b.manifest else None
        if v is not None and v.verified:
            return {"filename": b.name, "verifiedAt": formats.iso_ms(v.verified_at)}
    return None


def _failure(failure: health.Failure | None) -> dict[str, Any] | None:
    if failure is None:
        return None
    return {
        "at": formats.iso_ms(failure.at),
        "kind": failure.kind,
        "cause": failure.cause,
        "jobId": failure.job_id,
    }


def _test_restore(backups: list[Backup]) -> dict[str, Any] | None:
    found = health.last_test_restore(backups)
    if found is None:
        return None
    backup, v = found
    return {
        "filename": backup.name,
        "at": formats.iso_ms(v.verified_at),
        "ok": v.verified,
        "verdict": "restored" if v.verified else "failed",
    }
