"""The change feed in pgkeep's state file (core.ports.ChangeFeed): a process that changes a
target's backups (the CLI, say) records it; `pgkeep serve` looks every second and drops
its cached list of that target."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from pgkeep.errors import PgkeepError
from pgkeep.local.state import StateFile

logger = logging.getLogger(__name__)
SETUP = """
CREATE TABLE IF NOT EXISTS changes (id INTEGER PRIMARY KEY AUTOINCREMENT, target TEXT NOT NULL);
"""
KEEP = 1000  # changes kept for late listeners
POLL_SECONDS = 1.0


class LocalChangeFeed:
    def __init__(self, state: StateFile) -> None:
        self._state = state
        state.add_setup(SETUP)

    def announce(self, target: str) -> None:
        with self._state.transaction() as conn:
            conn.execute("INSERT INTO changes (target) VALUES (?)", (target,))
            conn.execute(
                "DELETE FROM changes WHERE id <= (SELECT max(id) FROM changes) - ?", (KEEP,)
            )

    def listen(self, on_change: Callable[[str], None], stop: threading.Event) -> None:
        seen: int | None = None
        while not stop.is_set():
            try:
                with self._state.transaction() as conn:
                    if seen is None:
                        seen = int(
                            conn.execute("SELECT coalesce(max(id), 0) FROM changes").fetchone()[0]
                        )
                        rows = []
                    else:
                        rows = conn.execute(
                            "SELECT id, target FROM changes WHERE id > ? ORDER BY id", (seen,)
                        ).fetchall()
                for row in rows:
                    seen = int(row["id"])
                    on_change(str(row["target"]))
            except PgkeepError as exc:
                logger.warning("not listening to pgkeep's state file: %s", exc.message)
            stop.wait(POLL_SECONDS)
