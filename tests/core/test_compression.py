"""In-process codecs: round trips in chunks, and damage caught, never passed silently."""

from __future__ import annotations

import os

import pytest

from pgkeep.core.compression import OUT_LIMIT, compressor, decompress, decompressor, transform
from pgkeep.core.models import Compression
from pgkeep.errors import Corrupt

DATA = b"".join(os.urandom(1000) + b"x" * 50_000 for _ in range(40))
PACKED = [Compression.GZIP, Compression.ZSTD]


def _chunks(data: bytes, size: int = 65_536) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def _pack(kind: Compression) -> bytes:
    return b"".join(transform(compressor(kind, 3), _chunks(DATA)))


@pytest.mark.parametrize("kind", list(Compression))
def test_codec_round_trip_in_chunks(kind: Compression) -> None:
    packed = _pack(kind)
    if kind is not Compression.NONE:
        assert len(packed) < len(DATA) / 5
    assert b"".join(transform(decompressor(kind), _chunks(packed, 777))) == DATA


@pytest.mark.parametrize("kind", PACKED)
def test_codec_truncated_is_corrupt(kind: Compression) -> None:
    packed = _pack(kind)
    with pytest.raises(Corrupt, match=r"truncated|damaged"):
        b"".join(transform(decompressor(kind), _chunks(packed[: len(packed) // 2])))


@pytest.mark.parametrize("kind", PACKED)
def test_codec_flipped_bytes_are_corrupt(kind: Compression) -> None:
    packed = bytearray(_pack(kind))
    middle = len(packed) // 2
    packed[middle : middle + 16] = bytes(b ^ 0xFF for b in packed[middle : middle + 16])
    with pytest.raises(Corrupt):
        b"".join(transform(decompressor(kind), _chunks(bytes(packed))))


@pytest.mark.parametrize("kind", PACKED)
def test_codec_trailing_garbage_is_corrupt(kind: Compression) -> None:
    with pytest.raises(Corrupt, match="after the end"):
        b"".join(transform(decompressor(kind), _chunks(_pack(kind) + b"garbage")))


@pytest.mark.parametrize("kind", [Compression.GZIP, Compression.ZSTD])
def test_decompression_hands_on_bounded_pieces_of_a_very_compressible_stream(
    kind: Compression,
) -> None:
    """pgbench's blank-padded rows compress ~115:1; one 1 MiB input chunk of such a zstd
    stream used to come out as one 92 MiB piece."""
    rows = b"".join(b"%10d|%84s\n" % (i, b"") for i in range(600_000))  # ~57 MB
    packed = b"".join(transform(compressor(kind, 3), _chunks(rows, 1 << 20)))
    assert len(packed) < len(rows) // 30
    pieces = list(decompress(_chunks(packed, 1 << 20), kind))
    assert b"".join(pieces) == rows
    assert max(len(p) for p in pieces) <= 4 * OUT_LIMIT
    with pytest.raises(Corrupt, match="truncated"):
        list(decompress(_chunks(packed[:-3], 1 << 20), kind))
