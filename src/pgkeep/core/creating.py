"""Creating a backup: dump the target through the write chain into storage, manifest first.

One create per target at a time. Nothing is visible until the bytes are stored
and the signed manifest describing them exists; a failure anywhere leaves
nothing behind. Retention runs only after a create has succeeded.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from pgkeep.core import encryption, naming, pipeline
from pgkeep.core.catalog import Catalog
from pgkeep.core.control import Control
from pgkeep.core.events import Actor, Events
from pgkeep.core.models import Backup, BackupOptions, Manifest
from pgkeep.core.ports import Dumper, DumpStream
from pgkeep.errors import Cancelled, Conflict, DumpFailed, InsufficientStorage, PgkeepError

logger = logging.getLogger(__name__)


class Creating:
    def __init__(
        self,
        catalog: Catalog,
        dumper: Dumper,
        events: Events,
        clock: Callable[[], datetime],
        *,
        defaults: BackupOptions | None = None,
        min_free_bytes: int = 0,
        timeout: timedelta | None = None,
        recipients: tuple[str, ...] = (),
    ) -> None:
        self.catalog = catalog
        self.dumper = dumper
        self.defaults = defaults or BackupOptions()
        self.min_free_bytes = min_free_bytes
        self.timeout = timeout
        self.recipients = recipients  # age: every new backup is encrypted to all of them
        self._events = events
        self._clock = clock
        self._lock = threading.Lock()

    @property
    def target(self) -> str:
        return self.catalog.target

    def create(
        self, options: BackupOptions | None, actor: Actor, control: Control | None = None
    ) -> Backup:
        """Dump the target into a new backup; a concurrent create is refused with Conflict."""
        with self._events.action("create", self.target, actor) as record:
            if not self._lock.acquire(blocking=False):
                raise Conflict(
                    f"a backup of {self.target!r} is already running",
                    "wait for it to finish, then try again",
                )
            try:
                options = options or self.defaults
                self._preflight(options)
                backup = self._create(options, actor, control)
            finally:
                self._lock.release()
            record.filename, record.size_bytes = backup.name, backup.size_bytes
        self.catalog.apply_retention(keep=backup.name)
        return backup

    def _preflight(self, options: BackupOptions) -> None:
        """Refuse early, with 507, when the backup would not fit."""
        if not self.catalog.storage.features.free_space:
            return  # object stores report no free space
        free = self.catalog.storage.free_bytes()
        if free is None:
            return
        same = [
            b
            for b in self.catalog.list()
            if (b.format, b.compression) == (options.format, options.compression)
        ]
        # The newest backup of the same kind is the best guess, with room to grow;
        # without one, the database's size on disk (a plain dump is rarely larger).
        estimate = int(same[0].size_bytes * 1.2) if same else self.dumper.database_size()
        if free < self.min_free_bytes + estimate:
            raise InsufficientStorage(
                f"not enough free space to back up {self.target!r}: {free} bytes "
                f"free, need {self.min_free_bytes} (PGKEEP_MIN_FREE_BYTES) + about {estimate}",
                "free space in the backup directory, or delete old backups",
            )

    def _create(self, options: BackupOptions, actor: Actor, control: Control | None) -> Backup:
        control = control or Control()
        timer = None
        if self.timeout is not None:
            timer = threading.Timer(self.timeout.total_seconds(), control.expire)
            timer.daemon = True
            timer.start()
        try:
            return self._dump(options, actor, control)
        finally:
            if timer is not None:
                timer.cancel()

    def _dump(self, options: BackupOptions, actor: Actor, control: Control) -> Backup:
        started_at = self._clock().astimezone(UTC)
        started = time.monotonic()
        key = pipeline.new_restrict_key()
        with self.dumper.dump(options, control, key) as stream:
            taken = {obj.name for obj in self.catalog.storage.list()}
            extension = pipeline.extension(options, encrypted=bool(self.recipients))
            name = naming.make_name(started_at, taken, extension)
            logger.info(
                "backup started target=%s backup=%s format=%s compression=%s",
                self.target,
                name,
                options.format,
                options.compression,
            )
            control.name(name)
            try:
                manifest = self._write(name, stream, options, started_at, actor, control)
            except PgkeepError as exc:
                if control.expired:
                    logger.error("backup timed out target=%s backup=%s", self.target, name)
                    raise DumpFailed(
                        f"the dump of {self.target!r} ran longer than PGKEEP_DUMP_TIMEOUT "
                        f"({self.timeout}) and was stopped; nothing was kept"
                    ) from None
                if control.failed:
                    logger.error(
                        "backup stopped target=%s backup=%s: %s", self.target, name, control.reason
                    )
                    raise DumpFailed(
                        f"backup {name!r} was {control.reason}; nothing was kept"
                    ) from None
                if control.cancelled.is_set():
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
        return self.catalog.get(name)

    def _write(
        self,
        name: str,
        stream: DumpStream,
        options: BackupOptions,
        started_at: datetime,
        actor: Actor,
        control: Control,
    ) -> Manifest:
        storage = self.catalog.storage
        with storage.open_write(name) as writer:
            chain = pipeline.WriteChain(options, writer, self.recipients)
            try:
                for chunk in stream.chunks:
                    control.check()
                    chain.feed(chunk)
                    control.report(bytes_written=chain.raw_bytes)
                sealed = chain.finish(f"{self.target!r}")
            finally:
                chain.close()
            manifest = Manifest(
                name=name,
                format=options.format,
                compression=options.compression,
                level=options.effective_level,
                size_bytes=sealed.size_bytes,
                sha256=sealed.sha256,
                database=self.catalog.database,
                server_version=stream.server_version,
                pg_dump_version=stream.tool_version,
                started_at=started_at,
                finished_at=self._clock(),
                created_by=actor.who,
                row_counts=stream.row_counts(),
                restrict_key=stream.restrict_key,
                kind=self.dumper.kind,
                flags=stream.flags,
                recipients=tuple(encryption.fingerprint(r) for r in self.recipients),
            )
            self.catalog.manifests.save(name, manifest)  # first: no backup without one
            try:
                writer.commit()
            except BaseException:
                self.catalog.manifests.delete(name)
                raise
        return manifest
