"""What a backup's recorded verification proves, never more: `restored` only when a test
restore proved every table's rows, `checksum` when only its bytes (checksum, readability,
archive) were checked, `inconclusive` when the verify server lacked what the backup needs
(core/environment.py: never the backup's fault, never counted against it), `failed`
naming the first check that failed, `none` when never verified. Its rehearsals
(core/rehearsing.py) are shown beside it and never change it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pgkeep.core.environment import ENVIRONMENT
from pgkeep.core.models import Backup, Rehearsal, Verification


@dataclass(frozen=True)
class Verdict:
    state: str  # restored, checksum, inconclusive, failed, none
    at: datetime | None = None
    rows_proven: int | None = None  # the rows a test restore counted, as the manifest has them
    check: str | None = None  # the check that failed (or, restored, the restore check)
    details: str | None = None
    source: str | None = None  # primary, or copy:NAME: whose bytes were checked
    rehearsals: tuple[Rehearsal, ...] = ()


NEVER = Verdict("none")


def state_of(v: Verification) -> str:
    """restored, checksum, inconclusive or failed."""
    if v.verified is None:
        return "inconclusive"
    if not v.verified:
        return "failed"
    restored = any(c.name == "restore" and c.ok for c in v.checks)
    return "restored" if restored else "checksum"


def verdict(backup: Backup) -> Verdict:
    manifest = backup.manifest
    v = manifest.verification if manifest else None
    if manifest is None or v is None:
        return NEVER
    state = state_of(v)
    if state in ("failed", "inconclusive"):
        wanted = (lambda n: n == ENVIRONMENT) if state == "inconclusive" else (lambda n: True)
        first = next((c for c in v.checks if not c.ok and wanted(c.name)), None)
        return Verdict(
            state,
            v.verified_at,
            check=first.name if first else None,
            details=first.details if first else None,
            source=v.source,
            rehearsals=v.rehearsals,
        )
    restore = next((c for c in v.checks if c.name == "restore" and c.ok), None)
    if restore is None:
        return Verdict("checksum", v.verified_at, source=v.source, rehearsals=v.rehearsals)
    rows = sum(manifest.row_counts.values()) if manifest.row_counts is not None else None
    return Verdict(
        "restored", v.verified_at, rows, restore.name, restore.details, v.source, v.rehearsals
    )
