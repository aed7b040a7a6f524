"""Reading a stored backup in bounded chunks: what the local and S3 handles share."""

from __future__ import annotations

from collections.abc import Callable, Iterator

CHUNK_SIZE = 1024 * 1024  # iter_range: verify, restore


def read_range(read: Callable[[int, int], bytes], start: int, end: int) -> Iterator[bytes]:
    """Bytes `start` up to and excluding `end`, by `read(offset, size)`, a chunk at a time."""
    offset = start
    while offset < end:
        chunk = read(offset, min(CHUNK_SIZE, end - offset))
        offset += len(chunk)
        yield chunk
