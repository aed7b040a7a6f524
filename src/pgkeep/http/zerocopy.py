"""Downloads of local files: ASGI's `http.response.zerocopysend` extension, served by
pgkeep's protocol so that a slow reader costs the server no memory and a fast one goes as
fast as before.

A body sent in chunks costs memory for as long as a slow client takes to read it: 300
downloads read at 4 KiB/s took `pgkeep serve` from 97 to 509 MiB RSS (a 1 MiB chunk in
each transport's buffer, the next one waiting), which glibc never returned. `sendfile`
alone holds nothing, but over loopback (curl, or a TLS proxy in front) it sent 10 to 25%
slower than copying on this kernel (6.18; bare loops differ alike). So the file is
copied while the client keeps up: as much as the socket's send buffer has room for, up
to 1 MiB, which it takes whole; with no room, 64 KiB, left to the transport. A client
that leaves that unread for 0.1 s is slow: from then on the kernel sends from the page
cache with `sendfile` as it reads, and the server holds nothing for it.
The file is in the page cache by then (`http.streaming` brings each block there on a
worker thread), so neither way waits on the disk.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import socket
import struct
import termios
from typing import Any, cast

import h11
from uvicorn.protocols.http.flow_control import FlowControl

logger = logging.getLogger(__name__)

EXTENSION = "http.response.zerocopysend"
MIN_CHUNK = 64 * 1024
MAX_CHUNK = 1024 * 1024
YIELD_EVERY = 8 * 1024 * 1024  # at 2 GB/s, 4 ms of the event loop
PATIENCE = 0.1  # seconds a client may take to read a chunk the socket had no room for


class _Span:
    """The bytes of a file range as h11 frames them: their length only (what h11's
    `send_with_data_passthrough` is for)."""

    def __init__(self, count: int) -> None:
        self.count = count

    def __len__(self) -> int:
        return self.count


class FileSender:
    """Sends the file ranges of one response on its connection, framed by h11."""

    def __init__(
        self, transport: asyncio.Transport, conn: h11.Connection, flow: FlowControl
    ) -> None:
        self._transport = transport
        self._conn = conn
        self._flow = flow
        self._slow = False  # the client left a chunk unread for PATIENCE: sendfile from now

    async def send(self, message: Any) -> bool:
        """Send a zerocopysend message's range of its file (in the page cache); False if
        the file ended before the range did (it shrank: the response cannot be
        completed). OSError or RuntimeError when the client is gone."""
        count, offset = int(message["count"]), int(message.get("offset", 0))
        span = cast(bytes, _Span(count))
        pieces = self._conn.send_with_data_passthrough(h11.Data(data=span))
        self._transport.set_write_buffer_limits(high=0)  # paused until it is empty
        try:
            for piece in pieces or ():
                if not isinstance(piece, _Span):
                    self._transport.write(piece)  # chunked framing, without a length
                elif not await self._send_range(message["file"].fileno(), offset, count):
                    logger.warning("a file shrank while being sent; the connection is closed")
                    return False
        finally:
            self._transport.set_write_buffer_limits()
        return True

    async def _send_range(self, fd: int, offset: int, count: int) -> bool:
        end, since_yield = offset + count, 0
        while offset < end:
            if self._transport.is_closing():
                raise ConnectionError("the client left")
            size = min(end - offset, MAX_CHUNK)
            sent = (
                await self._sendfile(fd, offset, size)
                if self._slow
                else self._copy(fd, offset, size)
            )
            if sent < size and (self._slow or sent == 0):
                return False
            offset += sent
            since_yield += sent
            if since_yield >= YIELD_EVERY:  # a client that takes everything: let others run
                since_yield = 0
                await asyncio.sleep(0)
            if self._transport.get_write_buffer_size():  # the socket did not take it all
                try:
                    await asyncio.wait_for(self._flow.drain(), PATIENCE)
                except TimeoutError:
                    self._slow = True
        return True

    def _copy(self, fd: int, offset: int, size: int) -> int:
        """Copy what the socket's send buffer takes now (at least MIN_CHUNK: a client it
        holds too much for is told apart by how long it takes to read that)."""
        room = max(_room(self._transport.get_extra_info("socket")), MIN_CHUNK)
        return _write_from(self._transport, fd, offset, min(size, room))

    async def _sendfile(self, fd: int, offset: int, size: int) -> int:
        # Python 3.11's sendfile, waiting for the buffer to empty when the connection is
        # lost, sets an exception on its cancelled waiter (InvalidStateError in the log,
        # seen when slow readers left): so the buffer is emptied first, here.
        await self._flow.drain()
        if self._transport.is_closing():
            raise ConnectionError("the client left")
        # A file object over the descriptor, not owning it: asyncio wants one, and moves its
        # position (nothing else uses it: every read is positional).
        with open(fd, "rb", buffering=0, closefd=False) as file:
            loop = asyncio.get_running_loop()
            return await loop.sendfile(self._transport, file, offset, size)


def _write_from(transport: asyncio.Transport, fd: int, offset: int, size: int) -> int:
    """Write `size` bytes of the file at `offset` to the transport; how many there were.
    Nothing stays referenced here while the response waits."""
    chunk = os.pread(fd, size, offset)
    transport.write(chunk)
    return len(chunk)


def _room(sock: Any) -> int:
    """How many bytes the socket's send buffer takes now (Linux: its size, halved for the
    kernel's bookkeeping as `socket(7)` says, less what it holds); MAX_CHUNK elsewhere."""
    try:
        size = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) // 2
        (held,) = struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * 4))
    except OSError:
        return MAX_CHUNK
    return max(0, int(size) - int(held))
