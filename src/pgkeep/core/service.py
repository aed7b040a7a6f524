"""One target's use cases bundled for the edges: the catalog, creating and proving, run as jobs.

The HTTP routes and the CLI reach a target through this: `start_*` run a use
case as a job in its pool (so the API can answer 202 and follow it), the use
cases themselves are called directly where waiting is the point (the CLI).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pgkeep.core.catalog import Catalog
from pgkeep.core.control import Control
from pgkeep.core.copying import Copier
from pgkeep.core.creating import Creating
from pgkeep.core.events import Actor
from pgkeep.core.jobs import Job, JobKind, JobRunner, Pool
from pgkeep.core.models import Backup, BackupOptions, Check
from pgkeep.core.ports import ReadHandle
from pgkeep.core.proving import Proving
from pgkeep.errors import NotFound, PgkeepError

READINESS_TTL_SECONDS = 5.0
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pools:
    """Where jobs run: dumps in one pool, verifies and restores (test restores) in another."""

    dumps: Pool = field(default_factory=lambda: Pool("dumps", 2))
    proving: Pool = field(default_factory=lambda: Pool("proving", 2, queue=8))


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

    def start_create(self, options: BackupOptions | None, actor: Actor) -> Job:
        """Create as a job; a second while one runs is refused with Conflict naming it."""

        def work(control: Control) -> tuple[str | None, Any]:
            backup = self.creating.create(options, actor, control)
            return backup.name, backup

        return self.jobs.submit(
            JobKind.CREATE,
            work,
            pool=self.pools.dumps,
            target=self.target,
            created_by=actor.who,
            exclusive=True,
        )

    def open(self, name: str, actor: Actor) -> tuple[Backup, ReadHandle, str]:
        """A backup to download, and where it came from: "primary", or "copy:NAME" when the
        primary store no longer has it."""
        try:
            backup, handle = self.catalog.open(name, actor)
            return backup, handle, "primary"
        except NotFound as missing:
            for store, catalog in self.copier.copies if self.copier else []:
                try:
                    backup, handle = catalog.open(name, actor)
                except PgkeepError:
                    continue
                logger.warning(
                    "backup %s of %s is missing from the primary store; served from copy %s",
                    name,
                    self.target,
                    store,
                )
                return backup, handle, f"copy:{store}"
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
        self, name: str, database: str, *, replace: bool, confirm: str | None, actor: Actor
    ) -> Job:
        backup = self.proving.check_restore(name, database, replace=replace, confirm=confirm)

        def work(control: Control) -> tuple[str | None, Any]:
            result = self.proving.restore(
                name, database, replace=replace, confirm=confirm, actor=actor, control=control
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
        free = (
            self.catalog.storage.free_bytes() if self.catalog.storage.features.free_space else None
        )
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

    def recover(self, live: frozenset[str] = frozenset(), older_than: float = 0.0) -> list[str]:
        """At start, before serving: clean up after a crash and fail interrupted jobs. Work
        other instances are doing (`live` backup names, anything younger than
        `older_than` seconds) is left alone."""
        removed = self.catalog.remove_partials(live, older_than)
        removed += self.proving.sweep()
        return removed
