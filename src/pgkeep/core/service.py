"""One target's use cases bundled for the edges: the catalog, creating and proving, run as jobs.

The HTTP routes and the CLI reach a target through this: `start_*` run a use
case as a job in its pool (so the API can answer 202 and follow it), the use
cases themselves are called directly where waiting is the point (the CLI).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pgkeep.core import deleting
from pgkeep.core.catalog import Catalog
from pgkeep.core.control import Control
from pgkeep.core.copying import Copier
from pgkeep.core.creating import Creating
from pgkeep.core.events import Actor
from pgkeep.core.jobs import Job, JobKind, Pool
from pgkeep.core.labels import Labels
from pgkeep.core.models import Backup, BackupOptions, Check, Trust
from pgkeep.core.ports import ReadHandle
from pgkeep.core.proving import Proving
from pgkeep.core.reading import Reading
from pgkeep.core.runner import JobRunner
from pgkeep.core.selecting import EVERYTHING, Selection
from pgkeep.errors import ConfigError, NotFound, PgkeepError, Unavailable

READINESS_TTL_SECONDS = 5.0
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pools:
    """Where jobs run: dumps in one pool, verifies and restores (test restores) in another."""

    dumps: Pool = field(default_factory=lambda: Pool("dumps", 2))
    proving: Pool = field(default_factory=lambda: Pool("proving", 2, queue=8))


@dataclass(frozen=True)
class Download:
    """A backup being downloaded: an open handle on the primary (ranges allowed), or a
    reading of a copy (whole, checked as it streams)."""

    backup: Backup
    source: str  # "primary" or "copy:NAME"
    handle: ReadHandle | None = None
    reading: Reading | None = None


@dataclass
class BackupService:
    """Everything pgkeep does for one target."""

    catalog: Catalog
    creating: Creating
    proving: Proving
    jobs: JobRunner
    pools: Pools = field(default_factory=Pools)
    probes: list[Callable[[], Check]] = field(default_factory=list)
    copier: Copier | None = None
    ready_ttl: float = READINESS_TTL_SECONDS
    _ready: tuple[float, list[Check]] | None = None

    @property
    def target(self) -> str:
        return self.catalog.target

    def start_create(self, options: BackupOptions | None, actor: Actor, labels: Labels = ()) -> Job:
        """Create as a job; a second while one runs is refused with Conflict naming it."""

        def work(control: Control) -> tuple[str | None, Any]:
            backup = self.creating.create(options, actor, control, labels)
            return backup.name, backup

        return self.jobs.submit(
            JobKind.CREATE,
            work,
            pool=self.pools.dumps,
            target=self.target,
            created_by=actor.who,
            exclusive=True,
        )

    def label(self, name: str, patch: Mapping[str, object], actor: Actor) -> Backup:
        """Merge labels into a backup's signed manifest, here and in every copy store that
        holds the backup (a copy store that cannot be written keeps the old ones, logged)."""
        raw = self.catalog.label(name, patch, actor)
        for store, catalog in self.copier.copies if self.copier else []:
            try:
                if catalog.manifests.load(name).trust is Trust.SIGNED:
                    catalog.manifests.put_raw(name, raw)
            except PgkeepError as exc:
                logger.warning(
                    "labels of %s not carried to copy store %s: %s", name, store, exc.message
                )
        return self.catalog.get(name)

    def delete(self, name: str, actor: Actor) -> list[str]:
        """Delete a backup from every store that holds it (core/deleting.py); the stores."""
        copier = self.copier
        return deleting.delete_everywhere(
            self.catalog,
            copier.copies if copier else [],
            name,
            actor,
            lambda: datetime.now(UTC),
            copier.cancel if copier else lambda _: None,
        )

    def open(self, name: str, actor: Actor) -> Download:
        """A backup to download: from the primary store (ranges served as stored), or, when the
        primary no longer has it, from a copy whose signed manifest names this backup and
        target, read whole through the one reader (hashed; its end only once it matches)."""
        try:
            backup, handle = self.catalog.open(name, actor)
            return Download(backup, "primary", handle=handle)
        except NotFound as missing:
            if self.copier and deleting.tombstoned(self.catalog, name):
                raise  # deleted: never served from a copy
            for store, catalog in self.copier.copies if self.copier else []:
                try:
                    backup = catalog.get(name)
                except PgkeepError:
                    continue
                if not backup.signed:
                    continue  # planted in the copy store: never served
                catalog.audit_download(backup, actor)
                logger.warning(
                    "backup %s of %s is missing from the primary store; served from copy %s",
                    name,
                    self.target,
                    store,
                )
                reading = Reading(catalog.storage, backup)
                return Download(backup, f"copy:{store}", reading=reading)
            raise missing

    def start_verify(self, name: str, *, restore: bool, actor: Actor) -> Job:
        if restore:
            self.proving.check_restorable()
        backup = self.catalog.get(name)  # 400/404 now, not in the job
        if restore:
            self.proving.check_openable(backup)  # 422 now: no identity for its recipients

        def work(control: Control) -> tuple[str | None, Any]:
            return name, self.proving.verify(name, restore=restore, actor=actor, control=control)

        return self._prove(JobKind.VERIFY, work, backup.name, actor)

    def start_restore(
        self,
        name: str,
        database: str,
        *,
        replace: bool,
        confirm: str | None,
        actor: Actor,
        selection: Selection = EVERYTHING,
    ) -> Job:
        """Restore as a job; every refusal (a table the backup lacks too) before it starts."""
        backup = self.proving.check_restore(
            name, database, replace=replace, confirm=confirm, selection=selection
        )

        def work(control: Control) -> tuple[str | None, Any]:
            result = self.proving.restore(
                name,
                database,
                replace=replace,
                confirm=confirm,
                actor=actor,
                control=control,
                checked=backup,  # refused or not once, when the job was planned
                selection=selection,
            )
            return name, result

        return self._prove(JobKind.RESTORE, work, backup.name, actor)

    def _prove(self, kind: JobKind, work: Any, name: str, actor: Actor) -> Job:
        return self.jobs.submit(
            kind,
            work,
            pool=self.pools.proving,
            target=self.target,
            filename=name,
            created_by=actor.who,
        )

    def readiness(self) -> list[Check]:
        """Everything a backup needs right now, each as a check; cached for a few seconds."""
        cached = self._ready
        if cached is not None and time.monotonic() - cached[0] < self.ready_ttl:
            return cached[1]
        checks = [self._database_check(), self._storage_check()]
        try:
            storage = self.catalog.storage
            free = storage.free_bytes() if storage.features.free_space else None
        except PgkeepError as exc:
            checks.append(Check("free_space", False, exc.message))
            free = None
        if free is not None:
            floor = self.creating.min_free_bytes
            checks.append(Check("free_space", free >= floor, f"{free} bytes free, floor {floor}"))
        checks.extend(probe() for probe in self.probes)
        self._ready = (time.monotonic(), checks)
        return checks

    def _database_check(self) -> Check:
        try:
            return Check("database", True, self.creating.dumper.check())
        except PgkeepError as exc:
            return Check("database", False, f"{exc.message} {exc.details}".strip())

    def _storage_check(self) -> Check:
        try:
            return Check("storage", True, self.catalog.storage.check())
        except PgkeepError as exc:
            return Check("storage", False, exc.message)

    @property
    def catalogs(self) -> list[Catalog]:
        """The primary store's catalog, then each copy store's."""
        return [self.catalog, *(c for _, c in (self.copier.copies if self.copier else []))]

    def check_stores(self) -> None:
        """At start: a store that refuses the credentials or has no such bucket is a
        ConfigError naming it; one that cannot be reached now is logged (retried on use)."""
        for catalog in self.catalogs:
            try:
                catalog.storage.check()
            except Unavailable as exc:
                logger.error("store %s: %s (retried on use)", catalog.storage.where, exc.message)
            except PgkeepError as exc:
                raise ConfigError(f"{catalog.storage.where}: {exc.message}", exc.details) from exc

    def warm(self) -> None:
        """List every store once (and so read its manifests), logging a store that cannot be."""
        for catalog in self.catalogs:
            try:
                catalog.list()
            except PgkeepError as exc:
                logger.info("store %s not listed at start: %s", catalog.storage.where, exc)

    def recover(self, live: frozenset[str] = frozenset(), older_than: float = 0.0) -> list[str]:
        """At start, before serving: clean up after a crash and fail interrupted jobs. Work
        other instances are doing (`live` backup names, anything younger than
        `older_than` seconds) is left alone."""
        removed = self.catalog.remove_partials(live, older_than)
        removed += self.proving.sweep(self._finished)
        return removed

    def _finished(self, job_id: str) -> bool:
        """A job this service's board knows, and which is over on every instance."""
        try:
            return self.jobs.get(job_id).status.finished
        except NotFound:
            return False
