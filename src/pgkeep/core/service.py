"""The backup service: create, list, open and delete backups of one target database.

Synchronous and plain; the HTTP edge calls it from the thread pool, the CLI directly.
"""

from __future__ import annotations

import builtins
import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from pgkeep.core import naming, retention
from pgkeep.core.models import Backup, StoredObject
from pgkeep.core.ports import Dumper, ReadHandle, Storage
from pgkeep.errors import Conflict, DumpFailed, PgkeepError

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class BackupService:
    """Owns the rules: one create at a time, nothing visible until complete,
    cleanup only after success."""

    def __init__(
        self,
        storage: Storage,
        dumper: Dumper,
        *,
        retention_days: int,
        clock: Clock = utc_now,
    ) -> None:
        self._storage = storage
        self._dumper = dumper
        self._retention_days = retention_days
        self._clock = clock
        self._create_lock = threading.Lock()

    @property
    def target(self) -> str:
        return self._dumper.target

    def create(self) -> Backup:
        """Dump the target into a new backup; a concurrent create is refused with Conflict."""
        if not self._create_lock.acquire(blocking=False):
            raise Conflict(
                f"a backup of database {self.target!r} is already running",
                "wait for it to finish, then try again",
            )
        try:
            backup = self._create_locked()
        finally:
            self._create_lock.release()
        self._apply_retention(keep=backup.name)
        return backup

    def list(self) -> list[Backup]:
        """Completed backups, newest first; unrelated objects in storage are left out."""
        backups = [
            _to_backup(obj) for obj in self._storage.list() if naming.is_backup_name(obj.name)
        ]
        return sorted(backups, key=lambda b: naming.sort_key(b.name), reverse=True)

    def open(self, name: str) -> tuple[Backup, ReadHandle]:
        """Open a backup for reading; the caller closes the handle."""
        handle = self._storage.open_read(naming.validate_name(name))
        return _to_backup(handle.info), handle

    def delete(self, name: str) -> None:
        self._storage.delete(naming.validate_name(name))
        logger.info("backup deleted target=%s backup=%s", self.target, name)

    def remove_partials(self) -> builtins.list[str]:
        """Remove what interrupted creates left behind (at start, before serving)."""
        removed = self._storage.remove_partials()
        for name in removed:
            logger.warning("removed partial backup left by an interrupted create: %s", name)
        return removed

    def _create_locked(self) -> Backup:
        started_at = self._clock().astimezone(UTC).replace(microsecond=0)
        started = time.monotonic()
        with self._dumper.dump() as chunks:
            name = naming.make_name(started_at, {obj.name for obj in self._storage.list()})
            logger.info("backup started target=%s backup=%s", self.target, name)
            try:
                size = self._write(name, chunks)
            except PgkeepError as exc:
                logger.error(
                    "backup failed target=%s backup=%s error=%s", self.target, name, exc.message
                )
                raise
        logger.info(
            "backup finished target=%s backup=%s size_bytes=%d duration_ms=%d",
            self.target,
            name,
            size,
            (time.monotonic() - started) * 1000,
        )
        return Backup(name, size, started_at, self._clock())

    def _write(self, name: str, chunks: Iterator[bytes]) -> int:
        with self._storage.open_write(name) as writer:
            for chunk in chunks:
                writer.write(chunk)
            if writer.bytes_written == 0:
                raise DumpFailed(f"pg_dump of database {self.target!r} produced no output")
            writer.commit()
            return writer.bytes_written

    def _apply_retention(self, keep: str) -> None:
        for backup in retention.expired(self.list(), self._retention_days, self._clock()):
            if backup.name == keep:
                continue
            try:
                self._storage.delete(backup.name)
            except PgkeepError as exc:
                logger.error("retention could not delete backup=%s error=%s", backup.name, exc)
                continue
            logger.info(
                "retention deleted target=%s backup=%s older_than_days=%d",
                self.target,
                backup.name,
                self._retention_days,
            )


def _to_backup(obj: StoredObject) -> Backup:
    return Backup(obj.name, obj.size_bytes, naming.created_at(obj.name), obj.modified_at)
