"""Idempotency-Key records in pgkeep's state file (core.idempotency.Claims): every pgkeep
process on this machine answers a repeat with the same job."""

from __future__ import annotations

from datetime import UTC, datetime

from pgkeep.core.idempotency import KEEP_FOR, Claim
from pgkeep.local.state import StateFile

SETUP = """
CREATE TABLE IF NOT EXISTS idempotency (
    caller TEXT NOT NULL, key TEXT NOT NULL, fingerprint TEXT NOT NULL, job_id TEXT,
    created_at TEXT NOT NULL, PRIMARY KEY (caller, key)
);
"""


class LocalClaims:
    def __init__(self, state: StateFile) -> None:
        self._state = state
        state.add_setup(SETUP)

    def claim(self, caller: str, key: str, fingerprint: str, now: datetime) -> Claim:
        with self._state.transaction() as conn:
            horizon = (now - KEEP_FOR).astimezone(UTC).isoformat()
            conn.execute("DELETE FROM idempotency WHERE created_at < ?", (horizon,))
            made = conn.execute(
                "INSERT OR IGNORE INTO idempotency (caller, key, fingerprint, created_at)"
                " VALUES (?, ?, ?, ?)",
                (caller, key, fingerprint, now.astimezone(UTC).isoformat()),
            ).rowcount
            row = conn.execute(
                "SELECT fingerprint, job_id FROM idempotency WHERE caller = ? AND key = ?",
                (caller, key),
            ).fetchone()
        return Claim(row["fingerprint"], row["job_id"], made > 0)

    def assign(self, caller: str, key: str, job_id: str | None, previous: str | None) -> bool:
        with self._state.transaction() as conn:
            done = conn.execute(
                "UPDATE idempotency SET job_id = ? WHERE caller = ? AND key = ? AND job_id IS ?",
                (job_id, caller, key, previous),
            ).rowcount
        return done > 0

    def release(self, caller: str, key: str) -> None:
        with self._state.transaction() as conn:
            conn.execute(
                "DELETE FROM idempotency WHERE caller = ? AND key = ? AND job_id IS NULL",
                (caller, key),
            )
