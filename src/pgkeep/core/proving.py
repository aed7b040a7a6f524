"""Proving backups: verify (checksum, full read, test restore) and restore into a database.

A restore checks the checksum before anything runs, restores into a fresh
staging database, compares every table's row count with the manifest, and only
then gives the database its name; any failure drops the staging database.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import time
from collections.abc import Iterator
from datetime import datetime

from pgkeep.core.compression import decompressor, transform
from pgkeep.core.jobs import Control
from pgkeep.core.models import (
    Backup,
    Check,
    DumpFormat,
    RestoreResult,
    TableComparison,
    Verification,
)
from pgkeep.core.ports import Restorer, Storage
from pgkeep.errors import Cancelled, Conflict, Corrupt, InvalidInput, PgkeepError, RestoreFailed

logger = logging.getLogger(__name__)

_DATABASE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]{0,62}")
_RESERVED_DATABASES = {"template0", "template1"}
_NO_MANIFEST = "no manifest: nothing to compare with"


def stored_chunks(storage: Storage, name: str, control: Control | None = None) -> Iterator[bytes]:
    """The stored bytes; with a control, each chunk checks for cancel and reports progress."""
    handle = storage.open_read(name)
    done = 0
    try:
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


def content(storage: Storage, backup: Backup, control: Control | None = None) -> Iterator[bytes]:
    """The dump itself: stored bytes, decompressed."""
    chunks = stored_chunks(storage, backup.name, control)
    return transform(decompressor(backup.stream_compression), chunks)


def integrity_checks(
    storage: Storage, backup: Backup, control: Control | None = None
) -> list[Check]:
    """One pass over the stored bytes: their sha256 against the manifest, and a full decode."""
    digest = hashlib.sha256()
    codec = decompressor(backup.stream_compression)
    decoded = 0
    problem = ""
    try:
        for chunk in stored_chunks(storage, backup.name, control):
            digest.update(chunk)
            decoded += len(codec.process(chunk))
        codec.finish()
    except Corrupt as exc:
        problem = exc.message
    manifest = backup.manifest
    if manifest is None:
        sha = Check("sha256", False, _NO_MANIFEST)
    elif digest.hexdigest() == manifest.sha256:
        sha = Check("sha256", True, f"matches the manifest ({manifest.sha256[:12]}…)")
    else:
        sha = Check("sha256", False, f"is {digest.hexdigest()}, manifest says {manifest.sha256}")
    if problem:
        return [sha, Check("readable", False, problem)]
    if decoded == 0:
        return [sha, Check("readable", False, "the backup holds no data")]
    what = "decompressed" if backup.stream_compression.value != "none" else "read"
    return [sha, Check("readable", True, f"{what} end to end: {decoded} bytes")]


def verify(
    storage: Storage,
    backup: Backup,
    scratch: Restorer | None,
    restore: bool,
    now: datetime,
    control: Control | None = None,
) -> Verification:
    checks = integrity_checks(storage, backup, control)
    intact = all(c.ok for c in checks if c.name == "readable")
    if intact and backup.format is DumpFormat.CUSTOM and scratch is not None:
        checks.append(_archive_check(storage, backup, scratch))
    if restore:
        checks.append(_restore_check(storage, backup, scratch, control))
    return Verification(all(c.ok for c in checks), now, tuple(checks))


def restore(
    storage: Storage,
    backup: Backup,
    restorer: Restorer,
    target: str,
    replace: bool,
    confirm: str | None,
    control: Control | None = None,
) -> RestoreResult:
    _validate_database(target, replace, confirm)
    if not replace and restorer.exists(target):
        raise Conflict(
            f"database {target!r} already exists",
            "choose a new name, or send replace: true with confirm repeating the name",
        )
    bad = [c for c in integrity_checks(storage, backup) if not c.ok and c.details != _NO_MANIFEST]
    if bad:
        raise Corrupt(
            f"backup {backup.name!r} failed its integrity check; nothing was restored",
            "; ".join(f"{c.name}: {c.details}" for c in bad),
        )
    started = time.monotonic()
    staging = "pgkeep_restore_" + secrets.token_hex(6)
    restorer.create(staging)
    try:
        tables = _load_and_compare(storage, backup, restorer, staging, control)
        if replace:
            restorer.drop(target)
        restorer.rename(staging, target)
    except BaseException:
        _drop_quietly(restorer, staging)
        raise
    return RestoreResult(target, int((time.monotonic() - started) * 1000), tables)


def _validate_database(target: str, replace: bool, confirm: str | None) -> None:
    if not _DATABASE_NAME.fullmatch(target) or target in _RESERVED_DATABASES:
        raise InvalidInput(
            f"invalid target database name {target[:70]!r}",
            "use letters, digits, _ and -, starting with a letter or _, at most 63 characters",
        )
    if replace and confirm != target:
        raise InvalidInput(
            f"replacing database {target!r} needs confirm: {target!r}",
            "replace drops the existing database; repeat its name in confirm",
        )


def _load_and_compare(
    storage: Storage,
    backup: Backup,
    restorer: Restorer,
    database: str,
    control: Control | None = None,
) -> tuple[TableComparison, ...]:
    restorer.load(
        database, backup.format, _archive_major(backup), lambda: content(storage, backup, control)
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
        listed = ", ".join(f"{t.table}: {t.actual} rows, manifest {t.expected}" for t in wrong[:10])
        raise RestoreFailed(
            f"restored row counts differ from the manifest in {len(wrong)} tables", listed
        )
    return tables


def _archive_check(storage: Storage, backup: Backup, scratch: Restorer) -> Check:
    try:
        details = scratch.check_archive(_archive_major(backup), lambda: content(storage, backup))
    except PgkeepError as exc:
        return Check("archive", False, f"{exc.message}: {exc.details}".strip(": "))
    return Check("archive", True, details)


def _restore_check(
    storage: Storage, backup: Backup, scratch: Restorer | None, control: Control | None
) -> Check:
    if scratch is None:
        return Check("restore", False, "no server configured for test restores")
    database = "pgkeep_verify_" + secrets.token_hex(6)
    try:
        scratch.create(database)
        tables = _load_and_compare(storage, backup, scratch, database, control)
    except Cancelled:
        raise
    except PgkeepError as exc:
        return Check("restore", False, f"{exc.message}: {exc.details}".strip(": "))
    finally:
        _drop_quietly(scratch, database)
    rows = sum(t.actual for t in tables)
    compared = "match the manifest" if backup.manifest and backup.manifest.row_counts else "counted"
    return Check(
        "restore",
        True,
        f"restored into {scratch.server}: {len(tables)} tables, {rows} rows, {compared}",
    )


def _archive_major(backup: Backup) -> int:
    if backup.manifest is None:
        return 0
    return int(backup.manifest.pg_dump_version.split(".")[0])


def _drop_quietly(restorer: Restorer, database: str) -> None:
    try:
        restorer.drop(database)
    except PgkeepError as exc:
        logger.error("could not drop database %s: %s %s", database, exc.message, exc.details)
