"""Streaming compression of plain dumps, in-process: gzip (zlib) and zstd (zstandard, threaded).

pg_dump's own zstd is not used: most builds here lack it, and a pg_restore
built without it could not read such a file.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterable, Iterator
from typing import Protocol

import zstandard

from pgkeep.core.models import Compression
from pgkeep.errors import Corrupt

_GZIP_WBITS = 31  # zlib's gzip container
# Decompressed output is handed on in pieces: gzip's at most OUT_LIMIT bytes each; zstd
# (no output limit in its streaming API) is fed ZSTD_SLICE bytes at a time, so a piece
# is at most the compression ratio times that (a pgbench dump, ~115:1, gives ~2 MiB
# where a whole 1 MiB input chunk gave 92 MiB).
OUT_LIMIT = 1024 * 1024
ZSTD_SLICE = 16 * 1024
ZSTD_THREADS = max(1, min(4, os.cpu_count() or 1))


class Codec(Protocol):
    def process(self, chunk: bytes) -> bytes: ...

    def finish(self) -> bytes: ...


class _Identity:
    def process(self, chunk: bytes) -> bytes:
        return chunk

    def pieces(self, chunk: bytes) -> Iterator[bytes]:
        if chunk:
            yield chunk

    def finish(self) -> bytes:
        return b""


class _GzipCompress:
    def __init__(self, level: int) -> None:
        self._obj = zlib.compressobj(level, zlib.DEFLATED, _GZIP_WBITS)

    def process(self, chunk: bytes) -> bytes:
        return self._obj.compress(chunk)

    def finish(self) -> bytes:
        return self._obj.flush()


class _ZstdCompress:
    def __init__(self, level: int) -> None:
        # write_checksum: without it a zstd frame decodes damaged bytes into silent garbage.
        cctx = zstandard.ZstdCompressor(level=level, threads=ZSTD_THREADS, write_checksum=True)
        self._obj = cctx.compressobj()

    def process(self, chunk: bytes) -> bytes:
        return self._obj.compress(chunk)

    def finish(self) -> bytes:
        return self._obj.flush()


class _GzipDecompress:
    def __init__(self) -> None:
        self._obj = zlib.decompressobj(_GZIP_WBITS)

    def process(self, chunk: bytes) -> bytes:
        if self._obj.eof and chunk:
            raise Corrupt("unexpected data after the end of the gzip stream")
        try:
            return self._obj.decompress(chunk)
        except zlib.error as exc:
            raise Corrupt(f"gzip data is damaged: {exc}") from None

    def pieces(self, chunk: bytes) -> Iterator[bytes]:
        """`process`, in pieces of at most OUT_LIMIT bytes."""
        data = chunk
        while data:
            if self._obj.eof:
                raise Corrupt("unexpected data after the end of the gzip stream")
            try:
                out = self._obj.decompress(data, OUT_LIMIT)
            except zlib.error as exc:
                raise Corrupt(f"gzip data is damaged: {exc}") from None
            if out:
                yield out
            data = self._obj.unconsumed_tail
            if self._obj.eof and self._obj.unused_data:
                raise Corrupt("unexpected data after the end of the gzip stream")

    def finish(self) -> bytes:
        if not self._obj.eof:
            raise Corrupt("gzip data is truncated")
        if self._obj.unused_data:
            raise Corrupt("unexpected data after the end of the gzip stream")
        return b""


class _ZstdDecompress:
    def __init__(self) -> None:
        self._obj = zstandard.ZstdDecompressor().decompressobj()
        self._done = False

    def process(self, chunk: bytes) -> bytes:
        if not chunk:
            return b""
        if self._done:
            raise Corrupt("unexpected data after the end of the zstd frame")
        try:
            out = self._obj.decompress(chunk)
        except zstandard.ZstdError as exc:
            raise Corrupt(f"zstd data is damaged: {exc}") from None
        self._done = self._obj.eof
        if self._done and self._obj.unused_data:
            raise Corrupt("unexpected data after the end of the zstd frame")
        return out

    def pieces(self, chunk: bytes) -> Iterator[bytes]:
        """`process`, fed ZSTD_SLICE bytes at a time."""
        view = memoryview(chunk)
        for start in range(0, len(view), ZSTD_SLICE):
            if out := self.process(bytes(view[start : start + ZSTD_SLICE])):
                yield out

    def finish(self) -> bytes:
        if not self._done:
            raise Corrupt("zstd data is truncated")
        return b""


def compressor(compression: Compression, level: int) -> Codec:
    if compression is Compression.GZIP:
        return _GzipCompress(level)
    if compression is Compression.ZSTD:
        return _ZstdCompress(level)
    return _Identity()


def decompressor(compression: Compression) -> Decompressor:
    if compression is Compression.GZIP:
        return _GzipDecompress()
    if compression is Compression.ZSTD:
        return _ZstdDecompress()
    return _Identity()


class Decompressor(Codec, Protocol):
    def pieces(self, chunk: bytes) -> Iterator[bytes]: ...


def decompress(chunks: Iterable[bytes], compression: Compression) -> Iterator[bytes]:
    """The decompressed stream, in bounded pieces; Corrupt if damaged or truncated."""
    codec = decompressor(compression)
    for chunk in chunks:
        yield from codec.pieces(chunk)
    codec.finish()


def transform(codec: Codec, chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Run chunks through a codec, skipping empty outputs, ending with its tail."""
    for chunk in chunks:
        if out := codec.process(chunk):
            yield out
    if tail := codec.finish():
        yield tail
