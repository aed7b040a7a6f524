"""Download bodies: a stored range, streamed in chunks without stalling the event loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from pgkeep.core.ports import ReadHandle

CHUNK_SIZE = 1024 * 1024  # downloads, measured: 256 KiB ~1.2 GB/s, 1 MiB ~2.5, 4 MiB ~2.7


async def stream_range(handle: ReadHandle, start: int, end: int) -> AsyncIterator[bytes]:
    """The range in 1 MiB chunks, closing the handle however the response ends.

    Chunks the page cache holds are read on the event loop (about 0.1 ms each);
    only those that would wait on the disk go to a worker thread. A thread hop
    per chunk cost a quarter of the throughput (measured: 1.7 against 2.4 GB/s).
    A chunk read on a thread (a cold disk, S3) starts the next one's read before
    it is sent, so the store and the client work at once.
    """
    loop = asyncio.get_running_loop()
    ahead: asyncio.Future[bytes] | None = None
    try:
        offset = start
        while offset < end:
            size = min(CHUNK_SIZE, end - offset)
            cached = None if ahead is not None else handle.read_cached(offset, size)
            if cached is not None:
                chunk = cached
            else:
                ahead = ahead or loop.run_in_executor(None, handle.read, offset, size)
                chunk = await asyncio.shield(ahead)  # a cancelled wait leaves the read running
                ahead = None
            offset += len(chunk)
            if cached is None and offset < end:
                next_size = min(CHUNK_SIZE, end - offset)
                ahead = loop.run_in_executor(None, handle.read, offset, next_size)
            yield chunk
    finally:
        if ahead is None or ahead.done():
            handle.close()
        else:  # a read is under way on a thread: close once it is over
            ahead.add_done_callback(lambda _: handle.close())
