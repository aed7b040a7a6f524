"""The backup service: create, list, open, delete, verify and restore backups of one target.

Synchronous and plain; the HTTP edge calls it from the thread pool, the CLI directly.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pgkeep.core import naming, proving, retention
from pgkeep.core.compression import compressor
from pgkeep.core.events import Event, Listener, emit
from pgkeep.core.jobs import Control, Job, JobKind, JobRunner
from pgkeep.core.manifests import ManifestStore
from pgkeep.core.models import (
    Backup,
    BackupOptions,
    Check,
    Manifest,
    RestoreResult,
    StoredObject,
    Verification,
)
from pgkeep.core.ports import Dumper, DumpStream, ReadHandle, Restorer, Storage
from pgkeep.core.retention import RetentionPolicy
from pgkeep.errors import (
    Cancelled,
    Conflict,
    DumpFailed,
    InsufficientStorage,
    NotFound,
    PgkeepError,
)

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]
PIN_SUFFIX = ".pin"
READY_PROBE = "pgkeep-ready-probe"


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Restorers:
    """Where restores go (`target`: the target's server) and verify's test restores (`scratch`)."""

    target: Restorer
    scratch: Restorer


class BackupService:
    """Owns the rules: one create at a time, nothing visible until complete and described by
    its manifest, cleanup only after success."""

    def __init__(
        self,
        storage: Storage,
        dumper: Dumper,
        *,
        retention: RetentionPolicy | None = None,
        restorers: Restorers | None = None,
        defaults: BackupOptions | None = None,
        clock: Clock = utc_now,
        min_free_bytes: int = 0,
    ) -> None:
        self._storage = storage
        self._dumper = dumper
        self.retention = retention or RetentionPolicy()
        self._restorers = restorers
        self.defaults = defaults or BackupOptions()
        self._clock = clock
        self._manifests = ManifestStore(storage)
        self._create_lock = threading.Lock()
        self.jobs = JobRunner(storage, clock)
        self.min_free_bytes = min_free_bytes
        self.listeners: builtins.list[Listener] = []
        self.readiness_probes: builtins.list[Callable[[], Check]] = []
        self._list_cache: tuple[object, builtins.list[Backup]] | None = None

    @property
    def target(self) -> str:
        return self._dumper.target

    def start_create(self, options: BackupOptions | None = None, created_by: str = "") -> Job:
        """Create as a job; a second while one runs is refused with Conflict naming it."""

        def work(control: Control) -> tuple[str | None, Any]:
            backup = self.create(options, created_by, control)
            return backup.name, backup

        return self.jobs.submit(JobKind.CREATE, work, created_by=created_by, exclusive=True)

    def start_verify(self, name: str, *, restore: bool = False, created_by: str = "") -> Job:
        self.get(name)  # 400/404 now, not in the job

        def work(control: Control) -> tuple[str | None, Any]:
            return name, self.verify(name, restore=restore, control=control)

        return self.jobs.submit(JobKind.VERIFY, work, filename=name, created_by=created_by)

    def start_restore(
        self,
        name: str,
        target_database: str,
        *,
        replace: bool = False,
        confirm: str | None = None,
        created_by: str = "",
    ) -> Job:
        self.get(name)

        def work(control: Control) -> tuple[str | None, Any]:
            result = self.restore(
                name, target_database, replace=replace, confirm=confirm, control=control
            )
            return name, result

        return self.jobs.submit(JobKind.RESTORE, work, filename=name, created_by=created_by)

    def create(
        self,
        options: BackupOptions | None = None,
        created_by: str = "",
        control: Control | None = None,
    ) -> Backup:
        """Dump the target into a new backup; a concurrent create is refused with Conflict."""
        if not self._create_lock.acquire(blocking=False):
            raise Conflict(
                f"a backup of database {self.target!r} is already running",
                "wait for it to finish, then try again",
            )
        try:
            options = options or self.defaults
            self._preflight(options)
            backup = self._create_locked(options, created_by, control)
        except PgkeepError as exc:
            status = "cancelled" if isinstance(exc, Cancelled) else "failed"
            self._emit("backup", status, error=f"{exc.message} {exc.details}".strip())
            raise
        finally:
            self._create_lock.release()
        self._emit("backup", "succeeded", backup.name, backup.size_bytes)
        self._apply_retention(keep=backup.name)
        return backup

    def _preflight(self, options: BackupOptions) -> None:
        """Refuse early, with 507, when the backup would not fit."""
        free = self._storage.free_bytes()
        if free is None:
            return
        same = [
            b
            for b in self.list()
            if (b.format, b.compression) == (options.format, options.compression)
        ]
        # The newest backup of the same kind is the best guess, with room to grow;
        # without one, the database's size on disk (a plain dump is rarely larger).
        estimate = int(same[0].size_bytes * 1.2) if same else self._dumper.database_size()
        if free < self.min_free_bytes + estimate:
            raise InsufficientStorage(
                f"not enough free space to back up database {self.target!r}: {free} bytes "
                f"free, need {self.min_free_bytes} (PGKEEP_MIN_FREE_BYTES) + about {estimate}",
                "free space in the backup directory, or delete old backups",
            )

    def _emit(
        self,
        kind: str,
        status: str,
        filename: str | None = None,
        size: int | None = None,
        error: str = "",
    ) -> None:
        emit(self.listeners, Event(kind, status, self.target, self._clock(), filename, size, error))

    def list(self) -> builtins.list[Backup]:
        """Completed backups, newest first; unrelated objects in storage are left out.

        The same list object is returned while storage reports the same version, so
        callers may cache what they derive from it by identity.
        """
        version = self._storage.version()
        cached = self._list_cache
        if version is not None and cached is not None and cached[0] == version:
            return cached[1]
        backups = self._scan()
        self._list_cache = (version, backups) if version is not None else None
        return backups

    def _scan(self) -> builtins.list[Backup]:
        objects = self._storage.list()
        # One listing says which manifests exist: no failed opens for backups without one.
        names = {obj.name for obj in objects}
        backups = [
            self._to_backup(obj, naming.manifest_name(obj.name) in names)
            for obj in objects
            if naming.is_backup_name(obj.name)
        ]
        return sorted(backups, key=lambda b: naming.sort_key(b.name), reverse=True)

    def get(self, name: str) -> Backup:
        handle = self._storage.open_read(naming.validate_name(name))
        handle.close()
        return self._to_backup(handle.info)

    def open(self, name: str) -> tuple[Backup, ReadHandle]:
        """Open a backup for reading; the caller closes the handle."""
        handle = self._storage.open_read(naming.validate_name(name))
        return self._to_backup(handle.info), handle

    def delete(self, name: str) -> None:
        naming.validate_name(name)
        if name in self.pinned():
            raise Conflict(f"backup {name!r} is pinned", "unpin it first")
        self._storage.delete(name)
        self._manifests.delete(name)
        logger.info("backup deleted target=%s backup=%s", self.target, name)

    def pinned(self) -> set[str]:
        suffix = PIN_SUFFIX
        return {o.name[: -len(suffix)] for o in self._storage.list() if o.name.endswith(suffix)}

    def pin(self, name: str, by: str = "") -> Backup:
        """Keep a backup whatever the retention policy says."""
        backup = self.get(name)
        self._storage.put(name + PIN_SUFFIX, by.encode())
        logger.info("backup pinned target=%s backup=%s by=%s", self.target, name, by)
        return backup

    def unpin(self, name: str) -> Backup:
        backup = self.get(name)
        with contextlib.suppress(NotFound):
            self._storage.delete(name + PIN_SUFFIX)
        logger.info("backup unpinned target=%s backup=%s", self.target, name)
        return backup

    def retention_plan(self) -> builtins.list[retention.Decision]:
        """What the policy would keep and delete now, and why; deletes nothing."""
        return retention.plan(self.list(), self.retention, self._clock(), self.pinned())

    def verify(
        self, name: str, *, restore: bool = False, control: Control | None = None
    ) -> Verification:
        """Check a backup (checksum, full read, optionally a test restore) and record the result."""
        backup = self.get(name)
        scratch = self._restorers.scratch if self._restorers else None
        verification = proving.verify(
            self._storage, backup, scratch, restore, self._clock(), control
        )
        if backup.manifest is not None:
            self._manifests.record(backup.manifest, verification)
        failed = "; ".join(f"{c.name}: {c.details}" for c in verification.checks if not c.ok)
        self._emit("verify", "succeeded" if verification.verified else "failed", name, error=failed)
        logger.info(
            "backup verified target=%s backup=%s verified=%s checks=%s",
            self.target,
            name,
            verification.verified,
            ",".join(f"{c.name}:{'ok' if c.ok else 'FAILED'}" for c in verification.checks),
        )
        return verification

    def restore(
        self,
        name: str,
        target_database: str,
        *,
        replace: bool = False,
        confirm: str | None = None,
        control: Control | None = None,
    ) -> RestoreResult:
        """Restore a backup into a new database (or, confirmed, in place of an existing one)."""
        if self._restorers is None:
            raise PgkeepError("restore is not configured for this service")
        backup = self.get(name)
        result = proving.restore(
            self._storage,
            backup,
            self._restorers.target,
            target_database,
            replace,
            confirm,
            control,
        )
        logger.info(
            "backup restored target=%s backup=%s into=%s duration_ms=%d",
            self.target,
            name,
            target_database,
            result.duration_ms,
        )
        return result

    def storage_free_bytes(self) -> int | None:
        return self._storage.free_bytes()

    def readiness(self) -> builtins.list[Check]:
        """Everything a backup needs right now, each as a check."""
        checks = []
        try:
            checks.append(Check("database", True, self._dumper.check()))
        except PgkeepError as exc:
            checks.append(Check("database", False, f"{exc.message} {exc.details}".strip()))
        try:
            self._storage.put(READY_PROBE, b"ok")
            self._storage.delete(READY_PROBE)
            checks.append(Check("storage", True, "writable"))
        except PgkeepError as exc:
            checks.append(Check("storage", False, exc.message))
        free = self._storage.free_bytes()
        if free is not None:
            enough = free >= self.min_free_bytes
            checks.append(
                Check("free_space", enough, f"{free} bytes free, floor {self.min_free_bytes}")
            )
        checks.extend(probe() for probe in self.readiness_probes)
        return checks

    def recover(self) -> builtins.list[str]:
        """At start, before serving: clean up after a crash and fail interrupted jobs."""
        removed = self.remove_partials()
        self.jobs.recover()
        return removed

    def remove_partials(self) -> builtins.list[str]:
        """Remove what interrupted creates left behind."""
        removed = self._storage.remove_partials()
        for name in removed:
            logger.warning("removed partial backup left by an interrupted create: %s", name)
        for name in self._manifests.orphans(self._storage.list()):
            self._storage.delete(name)
            logger.warning("removed manifest without a backup (interrupted create): %s", name)
            removed.append(name)
        return removed

    def _create_locked(
        self, options: BackupOptions, created_by: str, control: Control | None
    ) -> Backup:
        started_at = self._clock().astimezone(UTC)
        started = time.monotonic()
        with self._dumper.dump(options, control) as stream:
            taken = {obj.name for obj in self._storage.list()}
            name = naming.make_name(started_at, taken, options.extension)
            logger.info(
                "backup started target=%s backup=%s format=%s compression=%s",
                self.target,
                name,
                options.format,
                options.compression,
            )
            if control is not None:
                control.name(name)
            try:
                manifest = self._write(name, stream, options, started_at, created_by, control)
            except PgkeepError as exc:
                if control is not None and control.cancelled.is_set():
                    logger.warning("backup cancelled target=%s backup=%s", self.target, name)
                    raise Cancelled(f"backup {name!r} was cancelled; nothing was kept") from None
                logger.error(
                    "backup failed target=%s backup=%s error=%s", self.target, name, exc.message
                )
                raise
        logger.info(
            "backup finished target=%s backup=%s size_bytes=%d duration_ms=%d",
            self.target,
            name,
            manifest.size_bytes,
            (time.monotonic() - started) * 1000,
        )
        return self.get(name)

    def _write(
        self,
        name: str,
        stream: DumpStream,
        options: BackupOptions,
        started_at: datetime,
        created_by: str,
        control: Control | None,
    ) -> Manifest:
        codec = compressor(options.stream_compression, options.effective_level)
        digest = hashlib.sha256()
        raw = 0
        with self._storage.open_write(name) as writer:
            for chunk in stream.chunks:
                raw += len(chunk)
                if control is not None:
                    control.check()
                    control.report(bytes_written=raw)
                if out := codec.process(chunk):
                    digest.update(out)
                    writer.write(out)
            if tail := codec.finish():
                digest.update(tail)
                writer.write(tail)
            if raw == 0:
                raise DumpFailed(f"pg_dump of database {self.target!r} produced no output")
            manifest = Manifest(
                name=name,
                format=options.format,
                compression=options.compression,
                level=options.effective_level,
                size_bytes=writer.bytes_written,
                sha256=digest.hexdigest(),
                database=self.target,
                server_version=stream.server_version,
                pg_dump_version=stream.tool_version,
                started_at=started_at,
                finished_at=self._clock(),
                created_by=created_by,
                row_counts=stream.row_counts(),
            )
            self._manifests.save(manifest)  # the manifest lands first: no backup without one
            try:
                writer.commit()
            except BaseException:
                self._manifests.delete(name)
                raise
        return manifest

    def _apply_retention(self, keep: str) -> None:
        for decision in self.retention_plan():
            backup = decision.backup
            if decision.keep or backup.name == keep:
                continue
            try:
                self.delete(backup.name)
            except PgkeepError as exc:
                logger.error("retention could not delete backup=%s error=%s", backup.name, exc)
                continue
            logger.info(
                "retention deleted target=%s backup=%s reason=%s",
                self.target,
                backup.name,
                decision.reasons[0],
            )

    def _to_backup(self, obj: StoredObject, has_manifest: bool = True) -> Backup:
        try:
            manifest = self._manifests.load(obj.name) if has_manifest else None
        except PgkeepError as exc:
            logger.warning("ignoring unreadable manifest of %s: %s", obj.name, exc.message)
            manifest = None
        fmt, compression = naming.kind(obj.name)
        if manifest is not None:
            fmt, compression = manifest.format, manifest.compression
        created = naming.created_at(obj.name)
        return Backup(
            obj.name, obj.size_bytes, created, obj.modified_at, fmt, compression, manifest
        )
