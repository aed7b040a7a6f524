"""Download tickets redeemed once, in pgkeep's state file (core.ports.TicketLedger): a
ticket works once, whichever pgkeep process on this machine it is shown to."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

from pgkeep.local.state import StateFile

SETUP = """
CREATE TABLE IF NOT EXISTS tickets (nonce TEXT PRIMARY KEY, expires_at TEXT NOT NULL);
"""


class LocalTicketLedger:
    def __init__(self, state: StateFile) -> None:
        self._state = state
        state.add_setup(SETUP)

    def redeem_once(self, nonce: str, expires_at: datetime) -> bool:
        with self._state.transaction() as conn:
            now = datetime.now(UTC).isoformat()
            conn.execute("DELETE FROM tickets WHERE expires_at < ?", (now,))
            try:
                conn.execute(
                    "INSERT INTO tickets (nonce, expires_at) VALUES (?, ?)",
                    (nonce, expires_at.astimezone(UTC).isoformat()),
                )
            except sqlite3.IntegrityError:
                return False
        return True
