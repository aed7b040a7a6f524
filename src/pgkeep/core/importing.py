"""Importing: the operator's conscious act of making pgkeep trust a dump it did not sign.

`existing` re-checks backups whose manifest predates signing (0.1.0, schema 1,
exactly as 0.1.0 wrote it) against the sha256 that manifest recorded, and signs the
ones that match. `dump` brings in a pg_dump file from elsewhere under a new name,
after reading it end to end, encrypted to the target's age recipients when it has
some. Both are audited; the API offers neither. Neither trusts what the file says
about itself: a plain dump's `\\restrict` key is never recorded (every restore runs
under pgkeep's own), and its restore plan is made here in strict mode, so what the
admin session would run holds only what pg_dump writes there (restore_plan.py).
Imports rewrite no bytes: 0.1.0 backups keep theirs, and copies stay valid.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from pgkeep.core import encryption, naming, pipeline, planning, restore_plan
from pgkeep.core.catalog import Catalog
from pgkeep.core.compression import decompressor
from pgkeep.core.events import Actor, Events
from pgkeep.core.models import Backup, BackupOptions, Compression, DumpFormat, Manifest, Trust
from pgkeep.core.ports import ArchiveChecker
from pgkeep.errors import Corrupt, InvalidInput

logger = logging.getLogger(__name__)

_HEAD_BYTES = 64 * 1024
_DUMPED_BY = re.compile(rb"^-- Dumped by pg_dump version ([0-9][^\s]*)", re.MULTILINE)
_DUMPED_FROM = re.compile(rb"^-- Dumped from database version ([0-9][^\s]*)", re.MULTILINE)
_IMPORTABLE = (Trust.UNSIGNED,)  # an unknown key id, or a signature, is no 0.1.0 manifest


@dataclass(frozen=True)
class Outcome:
    name: str
    imported: bool
    reason: str


class Importing:
    def __init__(
        self,
        catalog: Catalog,
        events: Events,
        clock: Callable[[], datetime],
        recipients: tuple[str, ...] = (),
        archives: ArchiveChecker | None = None,
    ) -> None:
        self.catalog = catalog
        self._events = events
        self._clock = clock
        self._recipients = recipients
        self._archives = archives  # checks a custom archive's schema; None: refused

    def existing(self, actor: Actor) -> list[Outcome]:
        """Sign every backup whose unsigned manifest still matches its bytes."""
        return [
            self._existing(backup, actor) for backup in self.catalog.list() if not backup.signed
        ]

    def _existing(self, backup: Backup, actor: Actor) -> Outcome:
        manifests = self.catalog.manifests
        with manifests.updating(backup.name):
            read = manifests.load(backup.name)
            claimed = read.claimed
            if read.trust not in _IMPORTABLE or claimed is None:
                return Outcome(backup.name, False, f"{read.trust}: import the file itself instead")
            if claimed.database != self.catalog.database:
                return Outcome(backup.name, False, f"a backup of {claimed.database!r}")
            if backup.encrypted:
                return Outcome(backup.name, False, "encrypted: decrypt it, then import the file")
            if backup.format is DumpFormat.CUSTOM:
                try:
                    self._check_archive(self._stored(backup), backup.size_bytes)
                except Corrupt as exc:
                    return Outcome(backup.name, False, f"{exc.message} ({exc.details})")
            try:
                with self._events.action("import", self.catalog.target, actor, backup.name):
                    found = self._read(backup)
                    if found.sha256 != claimed.sha256 or found.problem:
                        raise Corrupt(
                            f"backup {backup.name!r} does not match its manifest; not imported",
                            found.problem
                            or f"sha256 is {found.sha256}, manifest says {claimed.sha256}",
                        )
                    imported = replace(
                        claimed,
                        restrict_key=None,
                        plan=found.plan(),
                        origin="import",
                        target=self.catalog.bound,
                        prefix=self.catalog.prefix,
                    )
                    manifests.save(backup.name, imported)
            except Corrupt as exc:
                return Outcome(backup.name, False, f"{exc.message} ({exc.details})")
        logger.info(
            "backup imported target=%s backup=%s by=%s", self.catalog.target, backup.name, actor.who
        )
        return Outcome(backup.name, True, "matches the sha256 its manifest recorded; now signed")

    def dump(self, open_chunks: Callable[[], Iterable[bytes]], actor: Actor) -> Backup:
        """Store a pg_dump file from elsewhere as a new, signed backup of this target (a custom
        archive's schema is read first: `open_chunks` gives its bytes each time it is called)."""
        with self._events.action("import", self.catalog.target, actor) as record:
            stream = iter(open_chunks())
            first = next(stream, b"")
            options = _kind(first)
            if options.format is DumpFormat.CUSTOM:
                self._check_archive(open_chunks(), 0)
            now = self._clock().astimezone(UTC)
            storage = self.catalog.storage
            encrypted = bool(self._recipients)
            name = naming.make_name(
                now,
                {o.name for o in storage.list()},
                pipeline.extension(options, encrypted=encrypted),
            )
            record.filename = name
            with storage.open_write(name) as writer:
                found = _Reader(options.stream_compression, options.format)
                chain = pipeline.WriteChain(options, writer, self._recipients, compress=False)
                try:
                    for chunk in _prepend(first, stream):
                        found.feed(chunk)
                        chain.feed(chunk)
                    found.finish()
                    sealed = chain.finish("the file")
                finally:
                    chain.close()
                if found.problem or found.decoded == 0:
                    raise Corrupt(
                        "the file is not a readable dump; nothing was imported", found.problem
                    )
                if (
                    options.format is DumpFormat.PLAIN
                    and b"PostgreSQL database dump" not in found.head
                ):
                    raise InvalidInput("the file does not look like a pg_dump plain dump")
                manifest = Manifest(
                    name=name,
                    format=options.format,
                    compression=options.compression,
                    level=0,
                    size_bytes=writer.bytes_written,
                    sha256=sealed.sha256,
                    database=self.catalog.database,
                    server_version=_version(_DUMPED_FROM, found.head),
                    pg_dump_version=_version(_DUMPED_BY, found.head),
                    started_at=now,
                    finished_at=self._clock(),
                    created_by=f"import by {actor.who}",
                    row_counts=None,
                    restrict_key=None,
                    recipients=tuple(encryption.fingerprint(r) for r in self._recipients),
                    target=self.catalog.bound,
                    prefix=self.catalog.prefix,
                    plan=found.plan(),
                    origin="import",
                )
                self.catalog.manifests.publish(name, writer, manifest)
            record.size_bytes = manifest.size_bytes
        logger.info("dump imported target=%s backup=%s by=%s", self.catalog.target, name, actor.who)
        return self.catalog.get(name)

    def _check_archive(self, chunks: Iterable[bytes], size_hint: int) -> None:
        if self._archives is None:
            raise Corrupt("a custom archive cannot be checked here; not imported")
        self._archives.check_import(chunks, size_hint)

    def _stored(self, backup: Backup) -> Iterator[bytes]:
        handle = self.catalog.storage.open_read(backup.name, backup.stored)
        try:
            yield from handle.iter_range(0, handle.info.size_bytes)
        finally:
            handle.close()

    def _read(self, backup: Backup) -> _Reader:
        handle = self.catalog.storage.open_read(backup.name, backup.stored)
        try:
            found = _Reader(backup.stream_compression, backup.format)
            for chunk in handle.iter_range(0, handle.info.size_bytes):
                found.feed(chunk)
            found.finish()
        finally:
            handle.close()
        return found


class _Reader:
    """Stored bytes in: their sha256, the decoded size, the dump's first bytes, any problem,
    and for a plain dump its restore plan, made strictly."""

    def __init__(self, compression: Compression, fmt: DumpFormat) -> None:
        self._digest = hashlib.sha256()
        self._codec = decompressor(compression)
        self._planner = planning.Planner(strict=True) if fmt is DumpFormat.PLAIN else None
        self.decoded = 0
        self.head = b""
        self.problem = ""

    def feed(self, chunk: bytes) -> None:
        self._digest.update(chunk)
        if self.problem:
            return
        try:
            out = self._codec.process(chunk)
        except Corrupt as exc:
            self.problem = exc.message
            return
        self.decoded += len(out)
        if len(self.head) < _HEAD_BYTES:
            self.head += out[: _HEAD_BYTES - len(self.head)]
        if self._planner is not None:
            self._planner.feed(out)

    def finish(self) -> None:
        if not self.problem:
            try:
                self._codec.finish()
            except Corrupt as exc:
                self.problem = exc.message

    def plan(self) -> restore_plan.Plan | None:
        """The plain dump's restore plan (Corrupt naming what the admin may not run)."""
        return self._planner.finish() if self._planner is not None else None

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()


def _kind(first: bytes) -> BackupOptions:
    if first.startswith(b"PGDMP"):
        return BackupOptions(DumpFormat.CUSTOM, _archive_compression(first))
    if first.startswith(b"\x1f\x8b"):
        return BackupOptions(DumpFormat.PLAIN, Compression.GZIP)
    if first.startswith(b"\x28\xb5\x2f\xfd"):
        return BackupOptions(DumpFormat.PLAIN, Compression.ZSTD)
    if not first:
        raise InvalidInput("the file is empty; nothing was imported")
    return BackupOptions(DumpFormat.PLAIN, Compression.NONE)


def _archive_compression(head: bytes) -> Compression:
    """How a custom archive compresses its data inside, from its header (`PGDMP`, version,
    int and offset sizes, format, then from 1.15 the algorithm, before it a gzip level):
    gzip, or none (lz4 and zstd, which pgkeep's own archives never use, read as none)."""
    if len(head) < 12:
        return Compression.NONE
    major, minor, int_size = head[5], head[6], head[8]
    if (major, minor) >= (1, 15):
        return Compression.GZIP if head[11] == 1 else Compression.NONE
    if len(head) < 12 + int_size:
        return Compression.NONE
    level = int.from_bytes(head[12 : 12 + int_size], "little")
    return Compression.NONE if level == 0 else Compression.GZIP


def _version(pattern: re.Pattern[bytes], head: bytes) -> str:
    match = pattern.search(head)
    return match[1].decode("ascii", "replace") if match else "unknown"


def _prepend(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    if first:
        yield first
    yield from rest
