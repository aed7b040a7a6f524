"""Idempotency-Key records in the control database (core.idempotency.Claims): a repeat
is answered with the same job whichever instance it reaches."""

from __future__ import annotations

from datetime import datetime

from pgkeep.core.idempotency import KEEP_FOR, Claim
from pgkeep.postgres.control.database import ControlDatabase


class PgClaims:
    def __init__(self, database: ControlDatabase) -> None:
        self._database = database

    def claim(self, caller: str, key: str, fingerprint: str, now: datetime) -> Claim:
        with self._database.connection() as conn:
            conn.execute("DELETE FROM pgkeep.idempotency WHERE created_at < %s", (now - KEEP_FOR,))
            made = conn.execute(
                "INSERT INTO pgkeep.idempotency (caller, key, fingerprint, created_at)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1",
                (caller, key, fingerprint, now),
            ).fetchone()
            row = conn.execute(
                "SELECT fingerprint, job_id FROM pgkeep.idempotency WHERE caller = %s AND key = %s",
                (caller, key),
            ).fetchone()
        if row is None:  # removed between the two statements (its 24 h just ended): again
            return self.claim(caller, key, fingerprint, now)
        return Claim(str(row["fingerprint"]), row["job_id"], made is not None)

    def assign(self, caller: str, key: str, job_id: str | None, previous: str | None) -> bool:
        with self._database.connection() as conn:
            done = conn.execute(
                "UPDATE pgkeep.idempotency SET job_id = %s WHERE caller = %s AND key = %s"
                " AND job_id IS NOT DISTINCT FROM %s",
                (job_id, caller, key, previous),
            )
        return done.rowcount > 0

    def release(self, caller: str, key: str) -> None:
        with self._database.connection() as conn:
            conn.execute(
                "DELETE FROM pgkeep.idempotency WHERE caller = %s AND key = %s AND job_id IS NULL",
                (caller, key),
            )
