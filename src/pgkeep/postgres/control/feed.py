"""The change feed in the control database (core.ports.ChangeFeed): an instance that
changes a target's backups announces it (NOTIFY), every instance listening drops its
cached list of that target."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import psycopg

from pgkeep.postgres import server
from pgkeep.postgres.control.database import ControlDatabase

logger = logging.getLogger(__name__)
CHANNEL = "pgkeep_changes"


class PgChangeFeed:
    def __init__(self, database: ControlDatabase) -> None:
        self._database = database

    def announce(self, target: str) -> None:
        """Tell every instance that `target`'s backups changed (their lists are stale)."""
        with self._database.connection() as conn:
            conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, target))

    def listen(self, on_change: Callable[[str], None], stop: threading.Event) -> None:
        """Call `on_change(target)` for every announcement, until `stop`; reconnects."""
        while not stop.is_set():
            try:
                with server.open_connection(
                    self._database.target, autocommit=True, connect_timeout=5
                ) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    on_change("*")  # whatever was announced while not listening
                    while not stop.is_set():
                        for note in conn.notifies(timeout=1.0):
                            on_change(note.payload)
            except psycopg.Error as exc:
                logger.warning("not listening to the control database: %s", type(exc).__name__)
                stop.wait(2.0)
