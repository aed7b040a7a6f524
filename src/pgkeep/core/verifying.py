"""Verify: the signature, the sha256 and a full read, and with `restore` a test restore, all
from one read of the backup (core/reading.py), falling back to a sound copy.

The checks a verification reports: `manifest` (signed by this service), `sha256` (the
stored bytes against it), `readable` (decrypted and decompressed end to end), `archive`
(a custom archive read end to end by pg_restore) and `restore` (restored into a scratch
database named after the job, every table's rows compared with the manifest, dropped).
A verify that cannot reach its server is an error of that run (Unavailable), never a
property of the backup: nothing is recorded then. A verify server lacking what the backup
needs (core/environment.py) makes it inconclusive (`verified` None, an `environment` check
naming what is missing), never failed. With `restore`, rehearsals follow (rehearsing.py).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Protocol

from pgkeep.core import environment, loading, rehearsing
from pgkeep.core.catalog import Catalog
from pgkeep.core.control import Control
from pgkeep.core.encryption import Keys
from pgkeep.core.events import ActionRecord, Actor, Events
from pgkeep.core.models import Backup, Check, DumpFormat, TableComparison, Trust, Verification
from pgkeep.core.ports import Restorer
from pgkeep.core.reading import Reading, integrity_checks, is_mismatch
from pgkeep.core.restore_rules import SCRATCH_PREFIX
from pgkeep.errors import (
    Cancelled,
    Corrupt,
    DatabaseUnavailable,
    NotFound,
    PgkeepError,
    RestoreFailed,
    StorageError,
    ToolError,
    Unavailable,
)


class Restorers(Protocol):
    @property
    def scratch(self) -> Restorer: ...

    @property
    def rehearsal(self) -> tuple[Restorer, ...]: ...


class Proving(Protocol):
    """What a verify needs of core/proving.py's Proving."""

    catalog: Catalog
    events: Events
    keys: Keys
    clock: Callable[[], datetime]

    @property
    def target(self) -> str: ...

    @property
    def restorers(self) -> Restorers: ...

    def check_restorable(self) -> None: ...

    def check_openable(self, backup: Backup) -> None: ...

    def sound_copies(self, name: str) -> Iterator[tuple[str, Catalog, Backup]]: ...

    def warn_copy(self, name: str, store: str) -> None: ...

    def load_and_compare(
        self,
        catalog: Catalog,
        reading: Reading,
        restorer: Restorer,
        database: str,
        control: Control | None,
        job: str,
        bare: bool = False,
    ) -> tuple[TableComparison, ...]: ...


logger = logging.getLogger(__name__)

INFRASTRUCTURE = (DatabaseUnavailable, ToolError, StorageError, Unavailable)
NOT_RESTORED = "not test-restored: the checks above failed"


def _recorded(where: Catalog, name: str, verification: Verification) -> Verification:
    """Record the result in the manifest; one that cannot be written (a full disk) is still
    the answer, with a check saying it was not recorded (never thrown away)."""
    try:
        where.manifests.record(name, verification)
    except StorageError as exc:
        logger.error("verification of %s not recorded in its manifest: %s", name, exc.message)
        note = Check("recorded", False, f"not written to the manifest: {exc.message}", False)
        return dataclasses.replace(verification, checks=(*verification.checks, note))
    return verification


def verify(
    proving: Proving, name: str, *, restore: bool, actor: Actor, control: Control | None, job: str
) -> Verification:
    """Check a backup and, when its manifest is signed, record the result in it."""
    with proving.events.action("verify", proving.target, actor, name) as record:
        backup = proving.catalog.get(name)
        if restore:
            proving.check_restorable()
            proving.check_openable(backup)
        verification = _verify(proving, proving.catalog, backup, restore, control, job)
        where, chosen = proving.catalog, backup
        if not _bytes_ok(verification):
            for store, catalog, copy in proving.sound_copies(name):
                copied = _verify(proving, catalog, copy, restore, control, job)
                if _bytes_ok(copied):
                    proving.warn_copy(name, store)
                    where, chosen = catalog, copy
                    verification = dataclasses.replace(
                        copied,
                        checks=(_primary_failed(verification), *copied.checks),
                        source=f"copy:{store}",
                    )
                    break
        servers = proving.restorers.rehearsal
        if restore and servers and chosen.signed and _bytes_ok(verification):
            found = rehearsing.rehearse(proving, servers, where, chosen, control, job)
            verification = dataclasses.replace(verification, rehearsals=found)
        _still_there(where, backup)
        verification = _recorded(where, backup.name, verification)
        _tell(record, verification)
    logger.info(
        "backup verified target=%s backup=%s verified=%s checks=%s",
        proving.target,
        name,
        "inconclusive" if verification.verified is None else verification.verified,
        ",".join(f"{c.name}:{'ok' if c.ok else 'FAILED'}" for c in verification.checks),
    )
    return verification


def _verify(
    proving: Proving,
    catalog: Catalog,
    backup: Backup,
    restore: bool,
    control: Control | None,
    job: str,
) -> Verification:
    checks = [_trust_check(backup)]
    reading = Reading(catalog.storage, backup, proving.keys, control)
    testing = restore and backup.signed and reading.opened
    missing = _missing(proving.restorers.scratch, backup) if testing else []
    if testing and not missing:
        checks += _restore_check(proving, catalog, reading, control, job)
    elif backup.format is DumpFormat.CUSTOM and reading.opened:
        checks += _archive_checks(proving.restorers.scratch, reading)
    else:
        checks += integrity_checks(backup, reading.inspect())
    if missing:
        checks.append(Check(environment.ENVIRONMENT, False, "; ".join(missing)))
    if restore and not any(c.name in ("restore", environment.ENVIRONMENT) for c in checks):
        checks.append(Check("restore", False, NOT_RESTORED))
    return Verification(environment.verified(checks), proving.clock(), tuple(checks))


def _missing(scratch: Restorer, backup: Backup) -> list[str]:
    """What the verify server lacks of what the backup's manifest says it needs."""
    needs = environment.needs_of(backup)
    try:
        offers = scratch.offers(needs.roles)
    except INFRASTRUCTURE as exc:
        raise unavailable("test-restore", scratch.server, exc) from exc
    for note in environment.version_notes(needs, offers):
        logger.info("backup %s: extension %s", backup.name, note)
    return environment.findings(needs, offers)


def _tell(record: ActionRecord, verification: Verification) -> None:
    """What the audit trail and alerts hear: failed checks (an error), what the verify
    server lacked (environment), rehearsals that failed."""
    failed = [c for c in verification.checks if not c.ok]
    env = environment.ENVIRONMENT
    record.error = "; ".join(f"{c.name}: {c.details}" for c in failed if c.name != env)
    record.environment = "; ".join(c.details for c in failed if c.name == env)
    record.rehearsal = "; ".join(
        f"PostgreSQL {r.major} ({r.server}): {r.details}"
        for r in verification.rehearsals
        if not r.ok
    )


def _archive_checks(scratch: Restorer, reading: Reading) -> list[Check]:
    """One read: staged for pg_restore to read end to end, hashed on the way."""
    backup = reading.backup
    archive: Check | None = None
    try:
        details = scratch.check_archive(
            loading.archive_major(backup), reading.content(), backup.size_bytes
        )
        archive = Check("archive", True, details)
    except Corrupt as exc:
        if not is_mismatch(exc, backup) and not reading.outcome.problem:
            archive = Check("archive", False, f"{exc.message}: {exc.details}".strip(": "))
    except INFRASTRUCTURE as exc:
        raise unavailable("read the archive", scratch.server, exc) from exc
    checks = integrity_checks(backup, reading.finish())
    return checks + ([archive] if archive is not None and all(c.ok for c in checks) else [])


def _restore_check(
    proving: Proving, catalog: Catalog, reading: Reading, control: Control | None, job: str
) -> list[Check]:
    """Integrity and a test restore from one read (an unplanned plain dump: two)."""
    backup, scratch = reading.backup, proving.restorers.scratch
    database = SCRATCH_PREFIX + job
    try:
        scratch.create(database, backup.manifest.database_owner if backup.manifest else "")
    except (*INFRASTRUCTURE, RestoreFailed) as exc:
        raise unavailable("test-restore", scratch.server, exc) from exc
    try:
        tables = proving.load_and_compare(catalog, reading, scratch, database, control, job)
    except Cancelled:
        raise
    except Corrupt as exc:
        checks = integrity_checks(backup, reading.finish())
        if all(c.ok for c in checks):
            checks.append(Check("restore", False, f"{exc.message}: {exc.details}".strip(": ")))
        return checks
    except INFRASTRUCTURE as exc:
        raise unavailable("test-restore", scratch.server, exc) from exc
    except PgkeepError as exc:
        if not _reachable(scratch, database):
            raise unavailable("test-restore", scratch.server, exc) from exc
        checks = integrity_checks(backup, reading.finish())
        lacking = environment.environmental(exc.details)
        if lacking is not None and all(c.ok for c in checks):
            said = f"the verify server {scratch.server} lacks what the backup uses: {lacking}"
            fix = "install or create what it names there"
            return [*checks, Check(environment.ENVIRONMENT, False, f"{said}; {fix}")]
        return [*checks, Check("restore", False, f"{exc.message}: {exc.details}".strip(": "))]
    finally:
        drop_quietly(scratch, database)
    checks = integrity_checks(backup, reading.outcome)
    rows = sum(t.actual for t in tables)
    compared = "match the manifest" if backup.manifest and backup.manifest.row_counts else "counted"
    details = f"restored into {scratch.server}: {len(tables)} tables, {rows} rows, {compared}"
    if backup.format is DumpFormat.CUSTOM:  # the restore read every entry of the archive
        checks.append(Check("archive", True, "read end to end by pg_restore, restoring it"))
    return [*checks, Check("restore", True, details)]


def _still_there(catalog: Catalog, backup: Backup) -> None:
    """A backup deleted while it was verified is not reported verified."""
    try:
        catalog.get(backup.name)
    except NotFound:
        raise NotFound(
            f"backup {backup.name!r} was deleted while it was being verified",
            "nothing was recorded",
        ) from None


def _bytes_ok(verification: Verification) -> bool:
    return all(c.ok for c in verification.checks if c.name in ("manifest", "sha256", "readable"))


def _primary_failed(verification: Verification) -> Check:
    failed = "; ".join(f"{c.name}: {c.details}" for c in verification.checks if not c.ok)
    return Check("primary", False, f"the primary store's copy failed: {failed}")


def _trust_check(backup: Backup) -> Check:
    if backup.trust is Trust.SIGNED:
        return Check("manifest", True, "signed by this service")
    return Check("manifest", False, f"{backup.trust}: never restored or test-restored")


def unavailable(what: str, server: str, exc: PgkeepError) -> Unavailable:
    return Unavailable(
        f"could not {what} on {server}: {exc.message}",
        f"{exc.details} (the backup's verified state is unchanged)".strip(),
    )


def _reachable(restorer: Restorer, database: str) -> bool:
    try:
        restorer.exists(database)
    except PgkeepError:
        return False
    return True


def drop_quietly(restorer: Restorer, database: str) -> None:
    try:
        restorer.drop(database)
    except PgkeepError as exc:
        logger.error("could not drop database %s: %s %s", database, exc.message, exc.details)
