"""The byte chain, both directions, built here and nowhere else.

Writing: dump → compress (plain dumps only) → encrypt (age, when recipients are
set) → sha256 and size of the stored bytes → store. Reading: store → (sha256) →
decrypt → decompress → dump. The table of name suffixes and media types lives
here too.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass

from pgkeep.core import encryption
from pgkeep.core.age_writer import AgeWriter
from pgkeep.core.compression import Codec, compressor, decompress, decompressor
from pgkeep.core.models import Backup, BackupOptions, Compression, DumpFormat
from pgkeep.core.ports import Writer
from pgkeep.errors import DumpFailed

# Suffix → (format, compression); custom archives compress inside, so one suffix.
_CLEAR: dict[str, tuple[DumpFormat, Compression]] = {
    ".sql": (DumpFormat.PLAIN, Compression.NONE),
    ".sql.gz": (DumpFormat.PLAIN, Compression.GZIP),
    ".sql.zst": (DumpFormat.PLAIN, Compression.ZSTD),
    ".dump": (DumpFormat.CUSTOM, Compression.NONE),
}
# Each also encrypted: `.sql.zst.age` is an age file holding a .sql.zst.
SUFFIXES = _CLEAR | {ext + encryption.SUFFIX: kind for ext, kind in _CLEAR.items()}
_MEDIA = {Compression.GZIP: "application/gzip", Compression.ZSTD: "application/zstd"}


def extension(options: BackupOptions, *, encrypted: bool = False) -> str:
    if options.format is DumpFormat.CUSTOM:
        ext = ".dump"
    else:
        ext = {Compression.NONE: ".sql", Compression.GZIP: ".sql.gz", Compression.ZSTD: ".sql.zst"}[
            options.compression
        ]
    return ext + (encryption.SUFFIX if encrypted else "")


def media_type(fmt: DumpFormat, compression: Compression, *, encrypted: bool = False) -> str:
    """What a download is served as: the stored bytes' own type (ciphertext: octet-stream)."""
    if fmt is DumpFormat.CUSTOM or encrypted:
        return "application/octet-stream"
    return _MEDIA.get(compression, "application/sql")


def tool_level(options: BackupOptions) -> int:
    """pg_dump's `--compress` for a custom archive: its internal gzip level, or 0."""
    return options.effective_level if options.compression is Compression.GZIP else 0


@dataclass(frozen=True)
class Sealed:
    """What the write chain measured: the dump's own size, and the stored bytes' sha256 and size."""

    raw_bytes: int
    sha256: str
    size_bytes: int


class WriteChain:
    """Dump bytes in, stored bytes out to `writer`, measured on the way.

    With `recipients` the compressed bytes are encrypted to them (age) before they
    are hashed and stored; `close` stops the encryptor's thread if the chain is
    abandoned before `finish`. Without `compress` (an import: the file's bytes are
    stored as they are, compressed as it was) only encryption and hashing remain.
    """

    def __init__(
        self,
        options: BackupOptions,
        writer: Writer,
        recipients: tuple[str, ...] = (),
        *,
        compress: bool = True,
    ) -> None:
        codecs: list[Codec] = (
            [compressor(options.stream_compression, options.effective_level)] if compress else []
        )
        self._encryptor = AgeWriter(recipients) if recipients else None
        if self._encryptor is not None:
            codecs.append(self._encryptor)
        self._codecs = codecs
        self._digest = hashlib.sha256()
        self._writer = writer
        self.raw_bytes = 0

    def feed(self, chunk: bytes) -> None:
        self.raw_bytes += len(chunk)
        for codec in self._codecs:
            chunk = codec.process(chunk)
        if chunk:
            self._store(chunk)

    def finish(self, what: str) -> Sealed:
        """Flush the chain; a dump that produced nothing is a failure, never a backup."""
        tail = b""
        for codec in self._codecs:
            tail = codec.process(tail) + codec.finish() if tail else codec.finish()
        if tail:
            self._store(tail)
        if self.raw_bytes == 0:
            raise DumpFailed(f"pg_dump of {what} produced no output")
        return Sealed(self.raw_bytes, self._digest.hexdigest(), self._writer.bytes_written)

    def close(self) -> None:
        if self._encryptor is not None:
            self._encryptor.close()

    def _store(self, data: bytes) -> None:
        self._digest.update(data)
        self._writer.write(data)


@dataclass(frozen=True)
class Sealing:
    """How a backup's stored bytes are sealed: compression, and encryption to whom."""

    compression: Compression
    encrypted: bool = False
    recipients: tuple[str, ...] = ()  # fingerprints, from the manifest


def sealing(backup: Backup) -> Sealing:
    return Sealing(backup.stream_compression, backup.encrypted, backup.recipients)


def _decrypted(
    stored: Iterable[bytes], sealed: Sealing, keys: encryption.Keys
) -> Generator[bytes, None, None]:
    """The stored bytes, decrypted when they are encrypted (refused early, NoIdentity,
    without an identity for their recipients)."""
    if not sealed.encrypted:
        yield from stored
        return
    decryptor = encryption.Decryptor(keys, sealed.recipients)
    try:
        for chunk in stored:
            if out := decryptor.process(chunk):
                yield out
        if tail := decryptor.finish():
            yield tail
    finally:
        decryptor.close()


class Decoder:
    """The read chain pushed a chunk at a time: decrypt (when sealed so), then decompress, in
    pieces of bounded size; Corrupt when the bytes do not decode, NoIdentity without a key."""

    def __init__(self, sealed: Sealing, keys: encryption.Keys = encryption.NO_KEYS) -> None:
        self._decryptor = (
            encryption.Decryptor(keys, sealed.recipients) if sealed.encrypted else None
        )
        self._decompressor = decompressor(sealed.compression)

    def process(self, chunk: bytes) -> Iterator[bytes]:
        if self._decryptor is not None:
            chunk = self._decryptor.process(chunk)
        if chunk:
            yield from self._decompressor.pieces(chunk)

    def finish(self) -> Iterator[bytes]:
        if self._decryptor is not None and (tail := self._decryptor.finish()):
            yield from self._decompressor.pieces(tail)
        self._decompressor.finish()

    def close(self) -> None:
        if self._decryptor is not None:
            self._decryptor.close()


def content(
    stored: Iterable[bytes], sealed: Sealing, keys: encryption.Keys = encryption.NO_KEYS
) -> Generator[bytes, None, None]:
    """The dump itself, from the stored bytes, in pieces of bounded size."""
    decrypted = _decrypted(stored, sealed, keys)
    try:
        yield from decompress(decrypted, sealed.compression)
    finally:
        decrypted.close()


def new_restrict_key() -> str:
    return secrets.token_hex(16)
