"""Proving backups: verify (core/verifying.py) and restore, and what both share.

Only a backup whose manifest this service signed is ever fed to psql or pg_restore,
and only through one pinned read (core/reading.py) that hashes as it streams: the
bytes that are checked are the bytes that are loaded. A plain dump is loaded by its
signed plan (core/restore_plan.py), its rows by a loader role that is no superuser.
Every refusal of a restore comes before any work starts. A restore lands in a fresh
staging database named after its job, every table's row count is compared with the
manifest, and only then does it take its name (and its source's owner). When the
primary store's bytes are not the signed ones, a copy whose signed manifest names
the same backup and target is read instead. Where a restore may go is restore_rules.py.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pgkeep.core import deleting, encryption, loading, restore_rules, selecting, sweeping, verifying
from pgkeep.core.catalog import Catalog
from pgkeep.core.control import Control
from pgkeep.core.events import Actor, Events
from pgkeep.core.models import Backup, RestoreResult, TableComparison, Trust, Verification
from pgkeep.core.ports import Restorer
from pgkeep.core.reading import Reading
from pgkeep.core.restore_rules import STAGING_PREFIX, RestoreRules
from pgkeep.core.selecting import EVERYTHING, Selection
from pgkeep.errors import Conflict, Corrupt, InvalidInput, PgkeepError, Untrusted

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Restorers:
    """Where restores go (`target`: the target's server), verify's test restores (`scratch`)
    and its upgrade rehearsals (`rehearsal`, core/rehearsing.py)."""

    target: Restorer
    scratch: Restorer
    rehearsal: tuple[Restorer, ...] = ()


@dataclass(frozen=True)
class _Into:
    """Where a restore goes: a new database, or (`replace`) in place of one; what it keeps."""

    database: str
    replace: bool
    selection: Selection


class Proving:
    def __init__(
        self,
        catalog: Catalog,
        restorers: Restorers,
        events: Events,
        clock: Callable[[], datetime],
        rules: RestoreRules | None = None,
        copies: list[tuple[str, Catalog]] | None = None,
        keys: encryption.Keys = encryption.NO_KEYS,
        spool: Path | None = None,
    ) -> None:
        self.catalog = catalog
        self.restorers = restorers
        self.rules = rules or RestoreRules()
        self.copies = copies or []
        self.keys = keys
        self.events = events
        self.clock = clock
        self._spool = spool

    @property
    def target(self) -> str:
        return self.catalog.target

    def verify(
        self,
        name: str,
        *,
        restore: bool,
        actor: Actor,
        control: Control | None = None,
        job: str = "",
    ) -> Verification:
        """Check a backup and, when its manifest is signed, record the result in it."""
        job = job or (control.job_id if control else "") or secrets.token_hex(8)
        return verifying.verify(self, name, restore=restore, actor=actor, control=control, job=job)

    def check_restorable(self) -> None:
        """Globals (roles, tablespaces) are restored by hand, never by pgkeep."""
        if self.catalog.kind == "globals":
            raise InvalidInput(
                f"{self.target!r} holds globals (roles and tablespaces): they are restored by "
                "hand, never through pgkeep",
                "psql -X -v ON_ERROR_STOP=1 -f FILE on the new server, before its databases "
                "(docs/runbooks/restore.md)",
            )

    def check_openable(self, backup: Backup) -> None:
        """An encrypted backup needs an identity for one of its recipients to be restored."""
        if backup.encrypted and not self.keys.can_open(backup.recipients):
            raise encryption.no_identity(backup.recipients)

    def check_restore(
        self,
        name: str,
        database: str,
        *,
        replace: bool,
        confirm: str | None,
        selection: Selection = EVERYTHING,
    ) -> Backup:
        """Every refusal a restore can meet, before any work starts; the backup to restore."""
        self.check_restorable()
        backup = self.catalog.get(name)
        _refuse_untrusted(backup, "restored")
        self.check_openable(backup)
        selecting.check(selection, backup, replace)
        restore_rules.check(self.rules, backup, database, replace, confirm)
        if not replace and self.restorers.target.exists(database):
            whole = "choose a new name, or replace it (--replace --confirm NAME, or " + (
                '"replace": true with "confirm" repeating the name)'
            )
            raise Conflict(  # a table-level restore never replaces: a new name only
                f"database {database!r} already exists",
                "choose a new name" if selection else whole,
            )
        return backup

    def restore(
        self,
        name: str,
        database: str,
        *,
        replace: bool = False,
        confirm: str | None = None,
        actor: Actor,
        control: Control | None = None,
        job: str = "",
        checked: Backup | None = None,
        selection: Selection = EVERYTHING,
    ) -> RestoreResult:
        """Restore a backup into a new database (or, confirmed, in place of its source); with a
        selection, only its tables (core/selecting.py). `checked`: the refusals were decided
        when the job was planned (`check_restore`)."""
        job = job or (control.job_id if control else "") or secrets.token_hex(8)
        with self.events.action("restore", self.target, actor, name):
            backup = checked or self.check_restore(
                name, database, replace=replace, confirm=confirm, selection=selection
            )
            into = _Into(database, replace, selection)
            try:
                result = self._restore(self.catalog, backup, into, control, job)
            except Corrupt as primary:
                result = self._from_copy(name, into, control, job, primary)
        logger.info(
            "backup restored target=%s backup=%s into=%s duration_ms=%d by=%s",
            self.target,
            name,
            database,
            result.duration_ms,
            actor.who,
        )
        return result

    def _from_copy(
        self, name: str, into: _Into, control: Control | None, job: str, primary: Corrupt
    ) -> RestoreResult:
        problems = [f"primary: {primary.message} {primary.details}".strip()]
        for store, catalog, copy in self.sound_copies(name):
            try:
                result = self._restore(catalog, copy, into, control, job)
            except Corrupt as exc:
                problems.append(f"copy:{store}: {exc.message} {exc.details}".strip())
                continue
            self.warn_copy(name, store)
            return dataclasses.replace(result, source=f"copy:{store}")
        raise Corrupt(
            f"backup {name!r} failed its integrity check; nothing was restored",
            "; ".join(problems),
        )

    def _restore(
        self, catalog: Catalog, backup: Backup, into: _Into, control: Control | None, job: str
    ) -> RestoreResult:
        restorer = self.restorers.target
        started = time.monotonic()
        staging = STAGING_PREFIX + job
        owner = backup.manifest.database_owner if backup.manifest else ""
        kept = selecting.check(into.selection, backup, into.replace)
        restorer.create(staging, owner)
        try:
            reading = Reading(catalog.storage, backup, self.keys, control)
            self.load(catalog, reading, restorer, staging, control, job)
            dropped = restorer.trim(staging, kept, into.selection.schemas) if kept else []
            tables = loading.compare(backup, restorer.row_counts(staging), kept)
            if into.replace:
                restorer.drop(into.database)
            restorer.rename(staging, into.database)
        except BaseException:
            verifying.drop_quietly(restorer, staging)
            raise
        database = into.database
        if owner and not restorer.give(database, owner):
            logger.warning("restored database %s kept pgkeep as owner: no role %r", database, owner)
        duration = int((time.monotonic() - started) * 1000)
        return RestoreResult(database, duration, tables, dropped_foreign_keys=tuple(dropped))

    def load_and_compare(
        self,
        catalog: Catalog,
        reading: Reading,
        restorer: Restorer,
        database: str,
        control: Control | None,
        job: str,
        bare: bool = False,
    ) -> tuple[TableComparison, ...]:
        """Load one read of a backup into `database`, then prove every table's rows (`bare`:
        a rehearsal's, without owners or grants)."""
        self.load(catalog, reading, restorer, database, control, job, bare)
        return loading.compare(reading.backup, restorer.row_counts(database))

    def load(
        self,
        catalog: Catalog,
        reading: Reading,
        restorer: Restorer,
        database: str,
        control: Control | None,
        job: str,
        bare: bool = False,
    ) -> None:
        """Load one read of a backup into `database` (existing, empty)."""
        backup = reading.backup
        with restorer.session(database, loading.archive_major(backup), job, bare) as session:
            if not loading.plain(backup):
                imported = backup.manifest is not None and backup.manifest.origin != "dump"
                loading.load_archive(
                    session, reading.content(), backup.size_bytes, imported, self._spool
                )
            else:
                plan = loading.recorded_plan(backup)
                if plan is None:  # made before plans: one extra read plans it
                    plan = loading.plan_of(reading)
                    reading = Reading(catalog.storage, backup, self.keys, control)
                loading.load_plain(session, plan, reading.content(), self._spool)
        if control is not None:
            control.check()

    def sound_copies(self, name: str) -> Iterator[tuple[str, Catalog, Backup]]:
        """Copies of `name` whose signed manifest names this backup and this target (none of a
        deleted backup: its tombstone says so)."""
        if self.copies and deleting.tombstoned(self.catalog, name):
            return
        for store, catalog in self.copies:
            try:
                backup = catalog.get(name)
            except PgkeepError:
                continue
            if backup.signed:
                yield store, catalog, backup

    def warn_copy(self, name: str, store: str) -> None:
        logger.warning(
            "backup %s of %s failed its checksum in the primary store; using copy %s",
            name,
            self.target,
            store,
        )

    def sweep(self, finished: Callable[[str], bool]) -> list[str]:
        """Drop what interrupted verifies and restores left (core/sweeping.py); the names."""
        restorers = self.restorers
        return sweeping.sweep(restorers.scratch, restorers.target, finished, restorers.rehearsal)


def _refuse_untrusted(backup: Backup, what: str) -> None:
    if backup.trust is not Trust.SIGNED:
        hint = (
            "import it with `pgkeep backup import --existing` once you trust it"
            if backup.trust in (Trust.UNSIGNED, Trust.MISSING)
            else "its manifest was not written by this service"
        )
        raise Untrusted(f"backup {backup.name!r} is never {what}: {backup.trust}", hint)
