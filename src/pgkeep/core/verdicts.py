"""What a backup's recorded verification proves, never more: `restored` only when a test
restore proved its rows, `checksum` when only its bytes (checksum, readability, archive)
were checked, `failed` naming the first check that failed, `none` when never verified."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pgkeep.core.models import Backup


@dataclass(frozen=True)
class Verdict:
    state: str  # restored, checksum, failed, none
    at: datetime | None = None
    rows_proven: int | None = None  # the rows a test restore counted, as the manifest has them
    check: str | None = None  # the check that failed (or, restored, the restore check)
    details: str | None = None
    source: str | None = None  # primary, or copy:NAME: whose bytes were checked


NEVER = Verdict("none")


def verdict(backup: Backup) -> Verdict:
    manifest = backup.manifest
    v = manifest.verification if manifest else None
    if manifest is None or v is None:
        return NEVER
    if not v.verified:
        failed = next((c for c in v.checks if not c.ok), None)
        return Verdict(
            "failed",
            v.verified_at,
            check=failed.name if failed else None,
            details=failed.details if failed else None,
            source=v.source,
        )
    restore = next((c for c in v.checks if c.name == "restore" and c.ok), None)
    if restore is None:
        return Verdict("checksum", v.verified_at, source=v.source)
    rows = sum(manifest.row_counts.values()) if manifest.row_counts is not None else None
    return Verdict("restored", v.verified_at, rows, restore.name, restore.details, v.source)
