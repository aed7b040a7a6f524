"""Proving backups: verify (signature, checksum, full read, test restore) and restore.

Only a backup whose manifest this service signed, and whose bytes match it, is
ever fed to psql or pg_restore; a plain dump must also open with the
`\\restrict` line its manifest records. Every refusal of a restore comes before
any work starts. A restore lands in a fresh staging database, every table's row
count is compared with the manifest, and only then does it take its name. A
verify that cannot reach its server is an error of that run (Unavailable), never
a property of the backup: nothing is recorded then.

Over 300 lines: verify and restore share the integrity read, the guarded dump
stream and the load-and-compare; split apart, one would reach into the other's
privates. Where a restore may go is restore_rules.py.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

from pgkeep.core import encryption, pipeline, restore_rules
from pgkeep.core.catalog import Catalog
from pgkeep.core.control import Control
from pgkeep.core.events import Actor, Events
from pgkeep.core.models import (
    Backup,
    Check,
    DumpFormat,
    RestoreResult,
    TableComparison,
    Trust,
    Verification,
)
from pgkeep.core.ports import Restorer
from pgkeep.core.restore_rules import SCRATCH_PREFIX, STAGING_PREFIX, RestoreRules
from pgkeep.errors import (
    Cancelled,
    Conflict,
    Corrupt,
    DatabaseUnavailable,
    InvalidInput,
    PgkeepError,
    RestoreFailed,
    StorageError,
    ToolError,
    Unavailable,
    Untrusted,
)

logger = logging.getLogger(__name__)

_INFRASTRUCTURE = (DatabaseUnavailable, ToolError, StorageError, Unavailable)


@dataclass(frozen=True)
class Restorers:
    """Where restores go (`target`: the target's server) and verify's test restores (`scratch`)."""

    target: Restorer
    scratch: Restorer


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
    ) -> None:
        self.catalog = catalog
        self.restorers = restorers
        self.rules = rules or RestoreRules()
        self.copies = copies or []
        self.keys = keys
        self._events = events
        self._clock = clock

    @property
    def target(self) -> str:
        return self.catalog.target

    def verify(
        self, name: str, *, restore: bool, actor: Actor, control: Control | None = None
    ) -> Verification:
        """Check a backup and, when its manifest is signed, record the result in it."""
        with self._events.action("verify", self.target, actor, name) as record:
            backup = self.catalog.get(name)
            verification = self._verify(backup, restore, control)
            where = self.catalog
            if not _bytes_ok(verification):
                found = self._from_copy(name, lambda other, b: other._verify(b, restore, control))
                if found is not None:
                    where, copied = found
                    verification = dataclasses.replace(
                        copied,
                        checks=(_primary_failed(verification), *copied.checks),
                    )
            where.manifests.record(backup.name, verification)
            record.error = "; ".join(
                f"{c.name}: {c.details}" for c in verification.checks if not c.ok
            )
        logger.info(
            "backup verified target=%s backup=%s verified=%s checks=%s",
            self.target,
            name,
            verification.verified,
            ",".join(f"{c.name}:{'ok' if c.ok else 'FAILED'}" for c in verification.checks),
        )
        return verification

    def _verify(self, backup: Backup, restore: bool, control: Control | None) -> Verification:
        if restore:
            self.check_restorable()
            self.check_openable(backup)
        checks = [_trust_check(backup), *self._integrity_checks(backup, control)]
        sound = all(c.ok for c in checks)
        opened = self._opens(backup)  # else: checksum, full read and the age header only
        if sound and opened and backup.format is DumpFormat.CUSTOM:
            checks.append(self._archive_check(backup))
        if restore:
            checks.append(self._restore_check(backup, sound, control))
        return Verification(all(c.ok for c in checks), self._clock(), tuple(checks))

    def check_restorable(self) -> None:
        """Globals (roles, tablespaces) are restored by hand, never by pgkeep."""
        if self.catalog.kind == "globals":
            raise InvalidInput(
                f"{self.target!r} holds globals (roles and tablespaces): they are restored by "
                "hand, never through pgkeep",
                "psql -X -v ON_ERROR_STOP=1 -f FILE on the new server, before its databases "
                "(docs/runbooks/restore.md)",
            )

    def _opens(self, backup: Backup) -> bool:
        return not backup.encrypted or self.keys.can_open(backup.recipients)

    def check_openable(self, backup: Backup) -> None:
        """An encrypted backup needs an identity for one of its recipients to be restored."""
        if not self._opens(backup):
            raise encryption.no_identity(backup.recipients)

    def check_restore(
        self, name: str, database: str, *, replace: bool, confirm: str | None
    ) -> Backup:
        """Every refusal a restore can meet, before any work starts; the backup to restore."""
        self.check_restorable()
        backup = self.catalog.get(name)
        _refuse_untrusted(backup, "restored")
        self.check_openable(backup)
        restore_rules.check(self.rules, backup, database, replace, confirm)
        if not replace and self.restorers.target.exists(database):
            raise Conflict(
                f"database {database!r} already exists",
                "choose a new name, or replace it (--replace --confirm NAME, or "
                '"replace": true with "confirm" repeating the name)',
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
    ) -> RestoreResult:
        """Restore a backup into a new database (or, confirmed, in place of its source)."""
        with self._events.action("restore", self.target, actor, name):
            backup = self.check_restore(name, database, replace=replace, confirm=confirm)
            bad = [c for c in self._integrity_checks(backup, None) if not c.ok]
            if not bad:
                result = self._restore(backup, database, replace, control)
            else:
                found = self._from_copy(name, _sound)
                if found is None:
                    raise Corrupt(
                        f"backup {name!r} failed its integrity check; nothing was restored",
                        "; ".join(f"{c.name}: {c.details}" for c in bad),
                    )
                other, source = self._bound(found[0]), found[1].source
                copy = other.catalog.get(name)
                result = dataclasses.replace(
                    other._restore(copy, database, replace, control), source=source
                )
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
        self, name: str, attempt: Callable[[Proving, Backup], Verification]
    ) -> tuple[Catalog, Verification] | None:
        """The first copy whose bytes pass where the primary's did not, with its checks."""
        for store, catalog in self.copies:
            try:
                backup = catalog.get(name)
            except PgkeepError:
                continue
            if not backup.signed:
                continue
            result = attempt(self._bound(catalog), backup)
            if _bytes_ok(result):
                logger.warning(
                    "backup %s of %s failed its checksum in the primary store; using copy %s",
                    name,
                    self.target,
                    store,
                )
                return catalog, dataclasses.replace(result, source=f"copy:{store}")
        return None

    def _bound(self, catalog: Catalog) -> Proving:
        """This proving, reading another store's copy."""
        return Proving(
            catalog, self.restorers, self._events, self._clock, self.rules, keys=self.keys
        )

    def _restore(
        self, backup: Backup, database: str, replace: bool, control: Control | None
    ) -> RestoreResult:
        restorer = self.restorers.target
        started = time.monotonic()
        staging = STAGING_PREFIX + secrets.token_hex(6)
        restorer.create(staging)
        try:
            tables = self._load_and_compare(backup, restorer, staging, control)
            if replace:
                restorer.drop(database)
            restorer.rename(staging, database)
        except BaseException:
            _drop_quietly(restorer, staging)
            raise
        return RestoreResult(database, int((time.monotonic() - started) * 1000), tables)

    def _integrity_checks(self, backup: Backup, control: Control | None) -> list[Check]:
        """One pass over the stored bytes: their sha256 against the manifest, and a full decode."""
        found = pipeline.inspect(self._stored(backup, control), pipeline.sealing(backup), self.keys)
        manifest = backup.manifest
        if manifest is None:
            sha = Check("sha256", False, f"nothing to compare with: {backup.trust}")
        elif found.sha256 == manifest.sha256:
            sha = Check("sha256", True, f"matches the manifest ({manifest.sha256[:12]}…)")
        else:
            sha = Check("sha256", False, f"is {found.sha256}, manifest says {manifest.sha256}")
        if found.problem:
            return [sha, Check("readable", False, found.problem)]
        if not found.opened:
            return [
                sha,
                Check(
                    "readable",
                    True,
                    "read end to end; age header valid; not decrypted (no identity for "
                    f"recipients {', '.join(backup.recipients)})",
                ),
            ]
        if found.decoded_bytes == 0:
            return [sha, Check("readable", False, "the backup holds no data")]
        what = "decompressed" if backup.stream_compression.value != "none" else "read"
        if backup.encrypted:
            what = "decrypted and " + what if what == "decompressed" else "decrypted"
        return [sha, Check("readable", True, f"{what} end to end: {found.decoded_bytes} bytes")]

    def _stored(self, backup: Backup, control: Control | None = None) -> Iterator[bytes]:
        """The stored bytes, of the version `backup` was found as; with a control, each chunk
        checks for cancel and reports progress."""
        handle = self.catalog.storage.open_read(backup.name, backup.stored)
        done = 0
        try:
            if backup.stored is not None and handle.etag != backup.stored.etag:
                raise Corrupt(
                    f"backup {backup.name!r} changed since it was checked",
                    "it was replaced in the store while being verified or restored",
                )
            if control is not None:
                control.expected_bytes = handle.info.size_bytes
            for chunk in handle.iter_range(0, handle.info.size_bytes):
                if control is not None:
                    control.check()
                    done += len(chunk)
                    control.report(bytes_written=done)
                yield chunk
        finally:
            handle.close()

    def _dump(self, backup: Backup, control: Control | None = None) -> Iterator[bytes]:
        """What psql or pg_restore reads: the dump, a plain one guarded by its \\restrict line."""
        dump = pipeline.content(self._stored(backup, control), pipeline.sealing(backup), self.keys)
        if backup.format is DumpFormat.PLAIN:
            key = backup.manifest.restrict_key if backup.manifest else None
            return pipeline.restricted(dump, key)
        return dump

    def _load_and_compare(
        self, backup: Backup, restorer: Restorer, database: str, control: Control | None
    ) -> tuple[TableComparison, ...]:
        restorer.load(
            database,
            backup.format,
            _archive_major(backup),
            lambda: self._dump(backup, control),
            backup.size_bytes,
        )
        if control is not None:
            control.check()
        actual = restorer.row_counts(database)
        expected = backup.manifest.row_counts if backup.manifest else None
        tables = tuple(
            TableComparison(t, None if expected is None else expected.get(t, -1), actual.get(t, -1))
            for t in sorted(set(actual) | set(expected or {}))
        )
        wrong = [t for t in tables if not t.ok]
        if wrong:
            listed = ", ".join(
                f"{t.table}: {t.actual} rows, manifest {t.expected}" for t in wrong[:10]
            )
            raise RestoreFailed(
                f"restored row counts differ from the manifest in {len(wrong)} tables", listed
            )
        return tables

    def _archive_check(self, backup: Backup) -> Check:
        scratch = self.restorers.scratch
        try:
            details = scratch.check_archive(
                _archive_major(backup), lambda: self._dump(backup), backup.size_bytes
            )
        except Corrupt as exc:
            return Check("archive", False, f"{exc.message}: {exc.details}".strip(": "))
        except _INFRASTRUCTURE as exc:
            raise _unavailable("read the archive", scratch.server, exc) from exc
        return Check("archive", True, details)

    def _restore_check(self, backup: Backup, sound: bool, control: Control | None) -> Check:
        if not sound:
            return Check("restore", False, "not test-restored: the checks above failed")
        scratch = self.restorers.scratch
        database = SCRATCH_PREFIX + secrets.token_hex(6)
        try:
            scratch.create(database)
        except (*_INFRASTRUCTURE, RestoreFailed) as exc:
            raise _unavailable("test-restore", scratch.server, exc) from exc
        try:
            tables = self._load_and_compare(backup, scratch, database, control)
        except Cancelled:
            raise
        except _INFRASTRUCTURE as exc:
            raise _unavailable("test-restore", scratch.server, exc) from exc
        except PgkeepError as exc:
            if not _reachable(scratch, database):
                raise _unavailable("test-restore", scratch.server, exc) from exc
            return Check("restore", False, f"{exc.message}: {exc.details}".strip(": "))
        finally:
            _drop_quietly(scratch, database)
        rows = sum(t.actual for t in tables)
        compared = (
            "match the manifest" if backup.manifest and backup.manifest.row_counts else "counted"
        )
        return Check(
            "restore",
            True,
            f"restored into {scratch.server}: {len(tables)} tables, {rows} rows, {compared}",
        )

    def sweep(self) -> list[str]:
        """Drop scratch and staging databases left by a crash; their names."""
        dropped = []
        for restorer, prefix in (
            (self.restorers.scratch, SCRATCH_PREFIX),
            (self.restorers.target, STAGING_PREFIX),
        ):
            try:
                dropped += restorer.sweep(prefix)
            except PgkeepError as exc:
                logger.warning(
                    "could not sweep %s* on %s: %s", prefix, restorer.server, exc.message
                )
        for name in dropped:
            logger.warning("dropped database %s left by an interrupted verify or restore", name)
        return dropped


def _bytes_ok(verification: Verification) -> bool:
    return all(c.ok for c in verification.checks if c.name in ("manifest", "sha256", "readable"))


def _sound(proving: Proving, backup: Backup) -> Verification:
    checks = tuple(proving._integrity_checks(backup, None))
    return Verification(all(c.ok for c in checks), proving._clock(), checks)


def _primary_failed(verification: Verification) -> Check:
    failed = "; ".join(f"{c.name}: {c.details}" for c in verification.checks if not c.ok)
    return Check("primary", False, f"the primary store's copy failed: {failed}")


def _trust_check(backup: Backup) -> Check:
    if backup.trust is Trust.SIGNED:
        return Check("manifest", True, "signed by this service")
    return Check("manifest", False, f"{backup.trust}: never restored or test-restored")


def _refuse_untrusted(backup: Backup, what: str) -> None:
    if backup.trust is not Trust.SIGNED:
        hint = (
            "import it with `pgkeep backup import --existing` once you trust it"
            if backup.trust in (Trust.UNSIGNED, Trust.MISSING)
            else "its manifest was not written by this service"
        )
        raise Untrusted(f"backup {backup.name!r} is never {what}: {backup.trust}", hint)


def _unavailable(what: str, server: str, exc: PgkeepError) -> Unavailable:
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


def _archive_major(backup: Backup) -> int:
    """The major of the pg_dump that wrote it (0 when unknown: an imported archive)."""
    version = backup.manifest.pg_dump_version if backup.manifest else ""
    match = re.match(r"[0-9]+", version)
    return int(match[0]) if match else 0


def _drop_quietly(restorer: Restorer, database: str) -> None:
    try:
        restorer.drop(database)
    except PgkeepError as exc:
        logger.error("could not drop database %s: %s %s", database, exc.message, exc.details)
