"""Serving the app on its own port, hardened: uvicorn's h11 protocol with a request deadline,
a connection cap below the process's file descriptor limit, and strict request framing.

Measured on the previous main: ~20,000 half-sent requests from one client used
up every descriptor (uvicorn has no header timeout and accepts without bound),
`/healthz` timed out, and each refused accept logged a line. Here a request must
arrive whole (headers and body) within PGKEEP_HEADER_TIMEOUT_SECONDS, and at
the cap the connection that has waited longest for its request is closed to
make room, so a client that sends its request promptly is always served. A request
whose framing is ambiguous (`http.framing`) gets a 400 and its connection is closed, so
nothing pipelined behind it is answered. Downloads of local files are sent by the
protocol itself (`http.zerocopy`), so a slow reader costs no memory.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import resource
import socket
import threading
from collections import OrderedDict
from collections.abc import Callable
from types import FrameType
from typing import Any, ClassVar

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol, RequestResponseCycle

from pgkeep.http import zerocopy
from pgkeep.http.errors import error_response
from pgkeep.http.framing import StrictConnection

logger = logging.getLogger(__name__)

RESERVED_DESCRIPTORS = 256  # backups, database connections, logs, threads' pipes
LISTEN_BACKLOG = 2048
_WAITING = (h11.IDLE, h11.SEND_BODY)


def descriptor_limit() -> int:
    """Raise the soft descriptor limit to the hard one; the soft limit in effect."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


def default_max_connections(limit: int) -> int:
    """Half the descriptors left after a reserve: a download holds a socket and a file."""
    return max(8, (limit - RESERVED_DESCRIPTORS) // 2)


def accept_batch(limit: int) -> int:
    """How many connections asyncio may accept in one go (its `backlog` argument).

    asyncio accepts up to that many sockets before any protocol runs, so a batch is
    descriptors the cap cannot see: kept to an eighth of what the reserve leaves.
    """
    return max(16, min(2048, (limit - RESERVED_DESCRIPTORS) // 8))


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a request deadline, a connection cap, strict framing and
    its own sending of local files."""

    max_connections: ClassVar[int] = 1000
    request_timeout: ClassVar[float] = 10.0
    # Connections waiting for (the rest of) a request, oldest first: eviction candidates.
    waiting: ClassVar[OrderedDict[GuardedH11Protocol, None]]
    refused: ClassVar[int]

    _deadline: asyncio.TimerHandle | None = None
    _shut = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        size = self.config.h11_max_incomplete_event_size
        self.conn = StrictConnection(h11.SERVER, *([] if size is None else [size]))
        self._app: Any = self.app
        self.app = self._serve

    async def _serve(self, scope: Any, receive: Any, send: Any) -> None:
        """The app, offered `http.response.zerocopysend` on a connection that can send files."""
        cycle = self.cycle  # this request's: h11 holds the next one back until it is over
        if self.transport.get_extra_info("sslcontext") is not None:
            await self._app(scope, receive, send)
            return
        sender = zerocopy.FileSender(self.transport, self.conn, self.flow)

        async def sending(message: Any) -> None:
            if message["type"] != zerocopy.EXTENSION:
                await send(message)
                return
            await self._send_file(cycle, sender, message)
            if not message.get("more_body", False):
                await send({"type": "http.response.body", "body": b"", "more_body": False})

        scope["extensions"] = {**scope.get("extensions", {}), zerocopy.EXTENSION: {}}
        await self._app(scope, receive, sending)

    async def _send_file(
        self, cycle: RequestResponseCycle, sender: zerocopy.FileSender, message: Any
    ) -> None:
        if not cycle.response_started:
            raise RuntimeError("zerocopysend before http.response.start")
        if cycle.disconnected or self.transport.is_closing() or cycle.scope["method"] == "HEAD":
            return
        try:
            complete = await sender.send(message)
        except (OSError, RuntimeError) as exc:  # the client left mid-file
            logger.debug("download ended early: %s", exc)
            complete = False
        if not complete:
            cycle.disconnected = True
            self.transport.abort()

    def send_400_response(self, msg: str) -> None:
        """A 400 with pgkeep's error body (uvicorn's is plain text), then close."""
        refusal = self.conn.refusal if isinstance(self.conn, StrictConnection) else msg
        rendered = error_response(400, "Invalid HTTP request", refusal)
        headers = [*rendered.raw_headers, (b"connection", b"close")]
        for event in (
            h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
            h11.Data(data=bytes(rendered.body)),
            h11.EndOfMessage(),
        ):
            self.transport.write(self.conn.send(event))
        self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.max_connections and not self._evict():
            self._shut = True
            type(self).refused += 1
            transport.abort()
            return
        super().connection_made(transport)
        self._await_request()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._shut:
            return
        self._settled()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._shut:
            return
        super().data_received(data)
        if self.conn.their_state not in _WAITING:
            self._settled()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._await_request()

    def _await_request(self) -> None:
        self._settled()
        self.waiting[self] = None
        self._deadline = self.loop.call_later(self.request_timeout, self._too_slow)

    def _settled(self) -> None:
        self.waiting.pop(self, None)
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if self.conn.their_state in _WAITING and not self.transport.is_closing():
            self.waiting.pop(self, None)
            self.transport.close()

    def _evict(self) -> bool:
        """Close the connection that has waited longest for its request; False if none is."""
        while self.waiting:
            victim, _ = self.waiting.popitem(last=False)
            if not victim.transport.is_closing():
                victim._settled()
                victim.transport.abort()
                return True
        return False


def protocol(max_connections: int, request_timeout: float) -> type[GuardedH11Protocol]:
    """A protocol class for one server: its own cap, deadline and waiting list."""
    attributes: dict[str, Any] = {
        "max_connections": max_connections,
        "request_timeout": request_timeout,
        "waiting": OrderedDict(),
        "refused": 0,
    }
    return type("PgkeepH11Protocol", (GuardedH11Protocol,), attributes)


class _Server(uvicorn.Server):
    """uvicorn's server, telling pgkeep at the first SIGTERM or Ctrl-C (before the open
    connections are waited for) so it takes no more jobs meanwhile."""

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_exit = on_exit

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not self.should_exit:  # in a thread: a signal handler must not take locks
            threading.Thread(target=self._on_exit, name="shutting-down", daemon=True).start()
        super().handle_exit(sig, frame)


def run(
    app: Any,
    host: str,
    port: int,
    max_connections: int | None,
    request_timeout: float,
    *,
    grace_seconds: float = 30.0,
    on_exit: Callable[[], None] = lambda: None,
    sockets: list[socket.socket] | None = None,
) -> None:
    """Serve `app`; on `sockets` when given (bound already, so a port in use was refused
    before the start-up work), else on host:port."""
    limit = descriptor_limit()
    cap = max_connections or default_max_connections(limit)
    if cap > limit - RESERVED_DESCRIPTORS:
        logger.warning("PGKEEP_MAX_CONNECTIONS=%d is close to the descriptor limit %d", cap, limit)
    logger.info("serving at most %d connections (descriptor limit %d)", cap, limit)
    # access_log=False: uvicorn's would print query strings (tokens) verbatim; ours redacts them.
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol(cap, request_timeout),
        log_config=None,
        access_log=False,
        server_header=False,
        # X-Forwarded-For is believed only from the proxies FORWARDED_ALLOW_IPS names: by
        # default from nobody (uvicorn would trust 127.0.0.1, so any local process could
        # name a new client address per try and dodge the per-address key limit).
        proxy_headers="FORWARDED_ALLOW_IPS" in os.environ,
        timeout_keep_alive=5,
        lifespan="on",
        backlog=accept_batch(limit),
        # After SIGTERM, requests in flight (downloads, event streams) get this long.
        timeout_graceful_shutdown=math.ceil(grace_seconds),
    )
    _Server(config, on_exit).run(sockets=sockets)
