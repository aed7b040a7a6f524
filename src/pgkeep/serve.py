"""Running the app under uvicorn with pgkeep's own logging and access log."""

from __future__ import annotations

import logging

import uvicorn

from pgkeep.config import Settings
from pgkeep.http.app import create_app

logger = logging.getLogger(__name__)


def serve(settings: Settings, *, host: str | None = None, port: int | None = None) -> None:
    app = create_app(settings)
    host = host or settings.host
    port = port or settings.port
    logger.info("pgkeep serving target=%s on http://%s:%d", app.state.service.target, host, port)
    # access_log=False: uvicorn's would print query strings (tokens) verbatim; ours redacts them.
    scheduler = app.state.scheduler
    if scheduler is not None:
        scheduler.start()
    try:
        uvicorn.run(
            app, host=host, port=port, log_config=None, access_log=False, server_header=False
        )
    finally:
        if scheduler is not None:
            scheduler.stop()
