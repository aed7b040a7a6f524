"""Retention: which backups have outlived the policy. Pure: backups, policy and now in; a list out.

Age is measured from each backup's creation time (the dump's start, encoded in
its name), not from the file's mtime, which copies and restores from tape change.
A backup is deleted when it is strictly older than `retention_days` days.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from pgkeep.core.models import Backup


def expired(backups: Sequence[Backup], retention_days: int, now: datetime) -> list[Backup]:
    """The backups older than `retention_days` at `now`; none when `retention_days` is 0."""
    if retention_days <= 0:
        return []
    cutoff = now - timedelta(days=retention_days)
    return [backup for backup in backups if backup.created_at < cutoff]
