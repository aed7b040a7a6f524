"""Download tickets redeemed once in the control database (core.ports.TicketLedger): a
ticket works once, on any instance."""

from __future__ import annotations

from datetime import datetime

from pgkeep.postgres.control.database import ControlDatabase


class PgTicketLedger:
    def __init__(self, database: ControlDatabase) -> None:
        self._database = database

    def redeem_once(self, nonce: str, expires_at: datetime) -> bool:
        """True the first time a ticket's nonce is redeemed, on any instance."""
        with self._database.connection() as conn:
            conn.execute("DELETE FROM pgkeep.tickets WHERE expires_at < now()")
            row = conn.execute(
                "INSERT INTO pgkeep.tickets (nonce, expires_at) VALUES (%s, %s)"
                " ON CONFLICT DO NOTHING RETURNING 1",
                (nonce, expires_at),
            ).fetchone()
        return row is not None
