"""Drift: a new backup that holds much less than the one before it.

Pure: the previous good backup's manifest, the new dump's row counts and size, and the
policy in; what drifted out. A mass deletion (a table emptied, a table dropped, a dump that
shrank) is told the moment the first backup after it is made, and the backup from before it
is pinned, so retention can never delete the last copy of the lost rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pgkeep.core.models import Backup, Drift, Manifest, TableDrift

# A dump smaller than this is never compared by size: a few kilobytes of header and
# settings make small dumps swing by half with no data lost.
MIN_SIZE_BYTES = 1024 * 1024
# Automatic pins a target holds at most: past this, a database that drifts back and forth
# (rows deleted, put back, deleted) is still alerted on, but pins nothing more, so it
# cannot keep every backup from retention and fill the store.
MAX_AUTOMATIC_PINS = 10


@dataclass(frozen=True)
class DriftPolicy:
    """When a new backup is drift: per target (`drift_*` settings)."""

    enabled: bool = True
    rows_percent: float = 50.0  # a table that lost more than this share of its rows
    size_percent: float = 50.0  # a dump that shrank by more than this share
    min_rows: int = 1000  # tables with fewer rows before are never compared


def baseline(backups: Iterable[Backup], new: str) -> Backup | None:
    """The backup a new one is compared with: the newest earlier successful, signed backup
    of the target that has row counts (verified or not)."""
    for backup in backups:  # newest first
        manifest = backup.manifest
        if backup.name == new or not backup.signed or manifest is None:
            continue
        if manifest.kind == "database" and manifest.row_counts is not None:
            return backup
    return None


def compare(
    previous: Manifest,
    counts: Mapping[str, int] | None,
    size_bytes: int,
    comparable_size: bool,
    policy: DriftPolicy,
) -> Drift | None:
    """What drifted between `previous` and a new dump with `counts` rows per table and
    `size_bytes` stored bytes (`comparable_size`: same format, compression and encryption);
    None when nothing did. A new dump without row counts (too big to count, or counting
    failed) is still compared by size: an unknown count never hides a shrunk dump."""
    if not policy.enabled or previous.row_counts is None:
        return None
    tables: list[TableDrift] = []
    for table, before in sorted(previous.row_counts.items() if counts is not None else ()):
        after = counts.get(table) if counts is not None else None
        if after is None:
            if before > 0:  # a dropped empty table lost nothing
                tables.append(TableDrift(table, before, None))
        elif before >= policy.min_rows and after < before * (1 - policy.rows_percent / 100):
            tables.append(TableDrift(table, before, after))
    shrank = (
        comparable_size
        and previous.size_bytes >= MIN_SIZE_BYTES
        and size_bytes < previous.size_bytes * (1 - policy.size_percent / 100)
    )
    if not tables and not shrank:
        return None
    return Drift(
        previous=previous.name,
        tables=tuple(tables),
        size_before=previous.size_bytes if shrank else None,
        size_after=size_bytes if shrank else None,
    )


def pin_reason(new: str) -> str:
    """What an automatic pin says: only an operator releases it."""
    return f"drift before {new}"
