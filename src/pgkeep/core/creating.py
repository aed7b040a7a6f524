"""Creating a backup: dump the target through the write chain into storage, manifest first.

One create per target at a time. Nothing is visible until the bytes are stored
and the signed manifest describing them exists; a failure anywhere leaves
nothing behind. Retention runs only after a create has succeeded. A plain dump's
restore plan (which runs the admin may run, which only the loader: restore_plan.py)
is made from the same bytes as they are written, and signed in its manifest with
the target and store prefix it belongs to.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from pgkeep.core import drift, encryption, naming, pipeline, planning, restore_plan
from pgkeep.core.catalog import Catalog
from pgkeep.core.control import Control
from pgkeep.core.events import SYSTEM, Actor, Events
from pgkeep.core.labels import Labels
from pgkeep.core.models import Backup, BackupOptions, Drift, DumpFormat, Manifest
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
        drift_policy: drift.DriftPolicy | None = None,
    ) -> None:
        self.catalog = catalog
        self.dumper = dumper
        self.defaults = defaults or BackupOptions()
        self.min_free_bytes = min_free_bytes
        self.timeout = timeout
        self.recipients = recipients  # age: every new backup is encrypted to all of them
        self.drift_policy = drift_policy or drift.DriftPolicy()
        self._events = events
        self._clock = clock
        self._lock = threading.Lock()

    @property
    def target(self) -> str:
        return self.catalog.target

    def create(
        self,
        options: BackupOptions | None,
        actor: Actor,
        control: Control | None = None,
        labels: Labels = (),
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
                backup = self._create(options, actor, control, labels)
            finally:
                self._lock.release()
            record.filename, record.size_bytes = backup.name, backup.size_bytes
            drifted = backup.manifest.drift if backup.manifest else None
            record.drift = "; ".join(drifted.reasons()) if drifted else ""
            if drifted:
                logger.warning(
                    "drift target=%s backup=%s: %s", self.target, backup.name, record.drift
                )
            held = self._automatic_pins() if drifted else 0
            if held >= drift.MAX_AUTOMATIC_PINS:  # a flapping database cannot fill the store
                record.drift += (
                    f"; {drifted.previous if drifted else ''} not pinned: {held} automatic "
                    "drift pins are held already (release the ones no longer needed)"
                )
        pin = drifted is not None and held < drift.MAX_AUTOMATIC_PINS
        if pin and drifted and not self._pin_before(backup.name, drifted.previous):
            return backup  # never run retention while the backup from before may go
        self.catalog.apply_retention(keep=backup.name)
        return backup

    def _automatic_pins(self) -> int:
        """How many of the target's pins drift made (an operator's are not counted)."""
        said = (self.catalog.pin_said(n) for n in self.catalog.pinned())
        return sum(1 for s in said if s.startswith(f"{SYSTEM.who}: {drift.pin_reason('')}"))

    def _pin_before(self, new: str, previous: str) -> bool:
        """Pin the backup from before a drift (before retention runs); False if it failed."""
        try:
            if previous not in self.catalog.pinned():  # an operator's pin stays theirs
                self.catalog.pin(previous, SYSTEM, reason=drift.pin_reason(new))
        except PgkeepError as exc:
            logger.error(
                "drift: could not pin %s target=%s, retention skipped: %s",
                previous,
                self.target,
                exc.message,
            )
            return False
        return True

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

    def _create(
        self, options: BackupOptions, actor: Actor, control: Control | None, labels: Labels
    ) -> Backup:
        control = control or Control()
        timer = None
        if self.timeout is not None:
            timer = threading.Timer(self.timeout.total_seconds(), control.expire)
            timer.daemon = True
            timer.start()
        try:
            return self._dump(options, actor, control, labels)
        finally:
            if timer is not None:
                timer.cancel()

    def _dump(
        self, options: BackupOptions, actor: Actor, control: Control, labels: Labels
    ) -> Backup:
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
                manifest = self._write(name, stream, options, started_at, actor, control, labels)
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
        labels: Labels,
    ) -> Manifest:
        storage = self.catalog.storage
        plans = options.format is DumpFormat.PLAIN and self.dumper.kind == "database"
        planner = planning.Planner() if plans else None
        with storage.open_write(name) as writer:
            chain = pipeline.WriteChain(options, writer, self.recipients)
            try:
                for chunk in stream.chunks:
                    control.check()
                    chain.feed(chunk)
                    if planner is not None:
                        planner.feed(chunk)
                    control.report(bytes_written=chain.raw_bytes)
                sealed = chain.finish(f"{self.target!r}")
            finally:
                chain.close()
            facts = stream.facts
            counts = stream.row_counts()
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
                row_counts=counts,
                restrict_key=stream.restrict_key,
                kind=self.dumper.kind,
                flags=stream.flags,
                recipients=tuple(encryption.fingerprint(r) for r in self.recipients),
                target=self.catalog.bound,
                prefix=self.catalog.prefix,
                server_id=facts.server_id,
                database_owner=facts.database_owner,
                owners=facts.owners,
                grantees=facts.grantees,
                extensions=facts.extensions,
                plan=_planned(planner, stream.restrict_key),
                drift=self._drift(name, counts, sealed.size_bytes, options),
                labels=labels,
            )
            self.catalog.manifests.publish(name, writer, manifest)
        return manifest

    def _drift(
        self, name: str, counts: dict[str, int] | None, size: int, options: BackupOptions
    ) -> Drift | None:
        """How much less the new dump holds than the backup before it, if much less."""
        if not self.drift_policy.enabled or self.dumper.kind != "database":
            return None
        previous = drift.baseline(self.catalog.list(), name)
        if previous is None or previous.manifest is None:
            return None
        before = previous.manifest
        comparable = (before.format, before.compression, bool(before.recipients)) == (
            options.format,
            options.compression,
            bool(self.recipients),
        )
        return drift.compare(before, counts, size, comparable, self.drift_policy)


def _planned(planner: planning.Planner | None, key: str | None) -> restore_plan.Plan | None:
    """The dump's restore plan; DumpFailed when it does not open with the key it was made with."""
    if planner is None:
        return None
    plan = planner.finish()
    if key is not None and planner.opening_key != key:
        raise DumpFailed("pg_dump's output does not open with the \\restrict key it was given")
    return plan
