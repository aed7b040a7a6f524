"""Importing: the operator's conscious act of making pgkeep trust a dump it did not sign.

`existing` re-checks backups whose manifest predates signing (or was signed with
a key since lost) against the sha256 that manifest recorded, and signs the ones
that match. `dump` brings in a pg_dump file from elsewhere under a new name,
after reading it end to end, encrypted to the target's age recipients when it has
some. Both are audited; the API offers neither.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from pgkeep.core import encryption, naming, pipeline
from pgkeep.core.age_writer import AgeWriter
from pgkeep.core.catalog import Catalog
from pgkeep.core.compression import decompressor
from pgkeep.core.events import Actor, Events
from pgkeep.core.models import Backup, BackupOptions, Compression, DumpFormat, Manifest, Trust
from pgkeep.core.ports import Writer
from pgkeep.errors import Corrupt, InvalidInput

logger = logging.getLogger(__name__)

_HEAD_BYTES = 64 * 1024
_DUMPED_BY = re.compile(rb"^-- Dumped by pg_dump version ([0-9][^\s]*)", re.MULTILINE)
_DUMPED_FROM = re.compile(rb"^-- Dumped from database version ([0-9][^\s]*)", re.MULTILINE)
_IMPORTABLE = (Trust.UNSIGNED, Trust.UNKNOWN_KEY)


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
    ) -> None:
        self.catalog = catalog
        self._events = events
        self._clock = clock
        self._recipients = recipients

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
            try:
                with self._events.action("import", self.catalog.target, actor, backup.name):
                    found = self._read(backup.name, backup.stream_compression)
                    if found.sha256 != claimed.sha256 or found.problem:
                        raise Corrupt(
                            f"backup {backup.name!r} does not match its manifest; not imported",
                            found.problem
                            or f"sha256 is {found.sha256}, manifest says {claimed.sha256}",
                        )
                    key = found.restrict_key if backup.format is DumpFormat.PLAIN else None
                    manifests.save(backup.name, replace(claimed, restrict_key=key))
            except Corrupt as exc:
                return Outcome(backup.name, False, f"{exc.message} ({exc.details})")
        logger.info(
            "backup imported target=%s backup=%s by=%s", self.catalog.target, backup.name, actor.who
        )
        return Outcome(backup.name, True, "matches the sha256 its manifest recorded; now signed")

    def dump(self, chunks: Iterable[bytes], actor: Actor) -> Backup:
        """Store a pg_dump file from elsewhere as a new, signed backup of this target."""
        with self._events.action("import", self.catalog.target, actor) as record:
            stream = iter(chunks)
            first = next(stream, b"")
            options = _kind(first)
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
                found = _Reader(options.stream_compression)
                sealer = _Sealer(writer, self._recipients)
                try:
                    for chunk in _prepend(first, stream):
                        found.feed(chunk)
                        sealer.write(chunk)
                    found.finish()
                    sealer.finish()
                finally:
                    sealer.close()
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
                    sha256=sealer.sha256,
                    database=self.catalog.database,
                    server_version=_version(_DUMPED_FROM, found.head),
                    pg_dump_version=_version(_DUMPED_BY, found.head),
                    started_at=now,
                    finished_at=self._clock(),
                    created_by=f"import by {actor.who}",
                    row_counts=None,
                    restrict_key=found.restrict_key if options.format is DumpFormat.PLAIN else None,
                    recipients=tuple(encryption.fingerprint(r) for r in self._recipients),
                )
                self.catalog.manifests.save(name, manifest)
                try:
                    writer.commit()
                except BaseException:
                    self.catalog.manifests.delete(name)
                    raise
            record.size_bytes = manifest.size_bytes
        logger.info("dump imported target=%s backup=%s by=%s", self.catalog.target, name, actor.who)
        return self.catalog.get(name)

    def _read(self, name: str, compression: Compression) -> _Reader:
        handle = self.catalog.storage.open_read(name)
        try:
            found = _Reader(compression)
            for chunk in handle.iter_range(0, handle.info.size_bytes):
                found.feed(chunk)
            found.finish()
        finally:
            handle.close()
        return found


class _Sealer:
    """What gets stored: the file's bytes, encrypted when there are recipients, hashed."""

    def __init__(self, writer: Writer, recipients: tuple[str, ...]) -> None:
        self._writer = writer
        self._digest = hashlib.sha256()
        self._encryptor = AgeWriter(recipients) if recipients else None

    def write(self, chunk: bytes) -> None:
        self._store(self._encryptor.process(chunk) if self._encryptor else chunk)

    def finish(self) -> None:
        if self._encryptor is not None:
            self._store(self._encryptor.finish())

    def close(self) -> None:
        if self._encryptor is not None:
            self._encryptor.close()

    def _store(self, data: bytes) -> None:
        if data:
            self._digest.update(data)
            self._writer.write(data)

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()


class _Reader:
    """Stored bytes in: their sha256, the decoded size, the dump's first bytes, any problem."""

    def __init__(self, compression: Compression) -> None:
        self._digest = hashlib.sha256()
        self._codec = decompressor(compression)
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

    def finish(self) -> None:
        if not self.problem:
            try:
                self._codec.finish()
            except Corrupt as exc:
                self.problem = exc.message

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()

    @property
    def restrict_key(self) -> str | None:
        return pipeline.opening_key(self.head) or None


def _kind(first: bytes) -> BackupOptions:
    if first.startswith(b"PGDMP"):
        return BackupOptions(DumpFormat.CUSTOM, Compression.NONE)
    if first.startswith(b"\x1f\x8b"):
        return BackupOptions(DumpFormat.PLAIN, Compression.GZIP)
    if first.startswith(b"\x28\xb5\x2f\xfd"):
        return BackupOptions(DumpFormat.PLAIN, Compression.ZSTD)
    if not first:
        raise InvalidInput("the file is empty; nothing was imported")
    return BackupOptions(DumpFormat.PLAIN, Compression.NONE)


def _version(pattern: re.Pattern[bytes], head: bytes) -> str:
    match = pattern.search(head)
    return match[1].decode("ascii", "replace") if match else "unknown"


def _prepend(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    if first:
        yield first
    yield from rest
