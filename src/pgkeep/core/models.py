"""The domain's value objects: what a backup is, as the core sees it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class StoredObject:
    """One completed object in storage: its name, size and last modification (UTC)."""

    name: str
    size_bytes: int
    modified_at: datetime


@dataclass(frozen=True)
class Backup:
    """One completed backup of a target database.

    `created_at` is the moment its dump started, to the second, as encoded in
    its name; retention ages backups from it.
    """

    name: str
    size_bytes: int
    created_at: datetime
    modified_at: datetime
