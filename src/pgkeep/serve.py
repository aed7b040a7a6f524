"""`pgkeep serve`: the app on its own port, with pgkeep's logging and the hardened server."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

from pgkeep.config import Settings
from pgkeep.http import server
from pgkeep.http.app import create_app

logger = logging.getLogger(__name__)


M_ARENA_MAX = -8  # glibc's mallopt parameter
ARENAS = 2


def fewer_arenas() -> None:
    """At most two malloc arenas (glibc), as MALLOC_ARENA_MAX=2 would set: each thread
    that moves dump bytes (pipe reader, uploader, download reads) otherwise keeps an
    arena of its own with freed memory in it. Measured on a create to S3: 142 → 130 MB
    peak RSS. A no-op where the C library is not glibc."""
    name = ctypes.util.find_library("c")
    if name is None:
        return
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt(M_ARENA_MAX, ARENAS)
    except (OSError, AttributeError):
        return


def serve(settings: Settings, *, host: str | None = None, port: int | None = None) -> None:
    fewer_arenas()
    app = create_app(settings)
    host = host or settings.host
    port = port or settings.port
    targets = ",".join(app.state.runtime.services)
    logger.info("pgkeep serving target=%s on http://%s:%d", targets, host, port)
    server.run(
        app,
        host,
        port,
        settings.max_connections,
        settings.header_timeout_seconds,
        grace_seconds=settings.shutdown_grace_seconds,
        on_exit=app.state.runtime.shutting_down,
    )
