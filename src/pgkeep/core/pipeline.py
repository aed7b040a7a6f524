"""The byte chain, both directions, built here and nowhere else.

Writing: dump → compress (plain dumps only) → encrypt (age, when recipients are
set) → sha256 and size of the stored bytes → store. Reading: store → (sha256) →
decrypt → decompress → dump. The table of name suffixes and media types lives
here too.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass

from pgkeep.core import encryption
from pgkeep.core.age_writer import AgeWriter
from pgkeep.core.compression import Codec, compressor, decompress
from pgkeep.core.models import Backup, BackupOptions, Compression, DumpFormat
from pgkeep.core.ports import Writer
from pgkeep.errors import Corrupt, DumpFailed

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
    abandoned before `finish`.
    """

    def __init__(
        self, options: BackupOptions, writer: Writer, recipients: tuple[str, ...] = ()
    ) -> None:
        codecs: list[Codec] = [compressor(options.stream_compression, options.effective_level)]
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


def content(
    stored: Iterable[bytes], sealed: Sealing, keys: encryption.Keys = encryption.NO_KEYS
) -> Generator[bytes, None, None]:
    """The dump itself, from the stored bytes, in pieces of bounded size."""
    decrypted = _decrypted(stored, sealed, keys)
    try:
        yield from decompress(decrypted, sealed.compression)
    finally:
        decrypted.close()


@dataclass(frozen=True)
class Inspection:
    sha256: str
    decoded_bytes: int
    problem: str  # why the bytes do not decode, or ""
    opened: bool = True  # False: encrypted, and no identity here opens it (header checked)


def inspect(
    stored: Iterable[bytes], sealed: Sealing, keys: encryption.Keys = encryption.NO_KEYS
) -> Inspection:
    """One pass over the stored bytes: their sha256, and a full decode: decrypted and
    decompressed when an identity opens it, else (encrypted) its age header checked."""
    digest = hashlib.sha256()
    opened = not sealed.encrypted or keys.can_open(sealed.recipients)
    decoded = 0

    def hashed() -> Iterator[bytes]:
        for chunk in stored:
            digest.update(chunk)
            yield chunk

    try:
        if opened:
            decoding = content(hashed(), sealed, keys)
            try:
                for out in decoding:
                    decoded += len(out)
            finally:
                decoding.close()
        else:
            header = encryption.HeaderCheck()
            for chunk in hashed():
                header.process(chunk)
            header.finish()
    except Corrupt as exc:
        return Inspection(digest.hexdigest(), decoded, exc.message, opened)
    return Inspection(digest.hexdigest(), decoded, "", opened)


# psql's \restrict: meta-commands (\! and friends) are refused until \unrestrict <key>.
RESTRICT_LINE = re.compile(rb"\\restrict ([A-Za-z0-9]+)\r?\n")
_OPENING_LIMIT = 64 * 1024


def new_restrict_key() -> str:
    return secrets.token_hex(16)


def restricted(dump: Iterable[bytes], key: str | None) -> Iterator[bytes]:
    """A plain dump that opens (after comments and blank lines) with `\\restrict <key>`.

    Nothing is passed on until the opening is seen, so psql never reads a line
    of a stream that fails the check. With no key recorded (pg_dump too old to
    write one), pgkeep's own `\\restrict` goes first and is never lifted.
    """
    chunks = iter(dump)
    if key is None:
        yield b"\\restrict " + new_restrict_key().encode() + b"\n"
        yield from chunks
        return
    head = b""
    for chunk in chunks:
        head += chunk
        found = opening_key(head)
        if found is None and len(head) <= _OPENING_LIMIT:
            continue
        if found != key:
            break
        yield head
        yield from chunks
        return
    raise Corrupt("the plain dump does not open with the \\restrict line its manifest records")


def opening_key(head: bytes) -> str | None:
    """The key of the `\\restrict` line that opens `head`, if comments lead to one."""
    pos = 0
    while pos < len(head):
        end = head.find(b"\n", pos)
        if end < 0:
            return None
        line = head[pos : end + 1]
        if line.startswith(b"\\restrict "):
            match = RESTRICT_LINE.fullmatch(line)
            return match[1].decode() if match else ""
        if line.strip() and not line.startswith(b"--"):
            return ""
        pos = end + 1
    return None
