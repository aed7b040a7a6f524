"""Serving the app on its own port, hardened: uvicorn's h11 protocol with a request deadline
and a connection cap below the process's file descriptor limit.

Measured on the previous main: ~20,000 half-sent requests from one client used
up every descriptor (uvicorn has no header timeout and accepts without bound),
`/healthz` timed out, and each refused accept logged a line. Here a request must
arrive whole (headers and body) within PGKEEP_HEADER_TIMEOUT_SECONDS, and at
the cap the connection that has waited longest for its request is closed to
make room, so a client that sends its request promptly is always served.
"""

from __future__ import annotations

import asyncio
import logging
import math
import resource
import threading
from collections import OrderedDict
from collections.abc import Callable
from types import FrameType
from typing import Any, ClassVar

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

logger = logging.getLogger(__name__)

RESERVED_DESCRIPTORS = 256  # backups, database connections, logs, threads' pipes
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
    """uvicorn's h11 protocol with a request deadline and a connection cap."""

    max_connections: ClassVar[int] = 1000
    request_timeout: ClassVar[float] = 10.0
    # Connections waiting for (the rest of) a request, oldest first: eviction candidates.
    waiting: ClassVar[OrderedDict[GuardedH11Protocol, None]]
    refused: ClassVar[int]

    _deadline: asyncio.TimerHandle | None = None
    _shut = False

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
) -> None:
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
        timeout_keep_alive=5,
        lifespan="on",
        backlog=accept_batch(limit),
        # After SIGTERM, requests in flight (downloads, event streams) get this long.
        timeout_graceful_shutdown=math.ceil(grace_seconds),
    )
    _Server(config, on_exit).run()
