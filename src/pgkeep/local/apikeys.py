"""API keys and failed key attempts in pgkeep's state file (core.apikeys.KeyStore and
Attempts): every pgkeep process on this machine honours the same keys."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pgkeep.core.credentials import ApiKey, record_of, row_of
from pgkeep.local.state import StateFile

SETUP = """
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, digest TEXT NOT NULL, scopes TEXT NOT NULL,
    targets TEXT NOT NULL, owner TEXT NOT NULL, created_at TEXT NOT NULL, expires_at TEXT,
    mac TEXT NOT NULL, revoked_at TEXT, last_used_at TEXT, parent TEXT
);
CREATE TABLE IF NOT EXISTS api_key_failures (address TEXT, key_id TEXT, at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS api_key_failures_at ON api_key_failures (at);
"""
_HOUR = timedelta(hours=1)  # failures older than this are forgotten


def _iso(value: object) -> object:
    return value.astimezone(UTC).isoformat() if isinstance(value, datetime) else value


class LocalKeyStore:
    def __init__(self, state: StateFile) -> None:
        self._state = state
        state.add_setup(SETUP)

    def add(self, key: ApiKey) -> None:
        with self._state.transaction() as conn:
            conn.execute(
                "INSERT INTO api_keys (id, name, digest, scopes, targets, owner, created_at,"
                " expires_at, mac, parent) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                tuple(_iso(v) for v in row_of(key)),
            )

    def get(self, key_id: str) -> ApiKey | None:
        with self._state.transaction() as conn:
            row = conn.execute("SELECT * FROM api_keys WHERE id = ?", (key_id,)).fetchone()
        return None if row is None else record_of(row)

    def list(self) -> list[ApiKey]:
        with self._state.transaction() as conn:
            rows = conn.execute("SELECT * FROM api_keys ORDER BY created_at, id").fetchall()
        return [record_of(r) for r in rows]

    def revoke(self, key_id: str, at: datetime) -> bool:
        with self._state.transaction() as conn:
            done = conn.execute(
                "UPDATE api_keys SET revoked_at = coalesce(revoked_at, ?) WHERE id = ?",
                (_iso(at), key_id),
            )
        return done.rowcount > 0

    def touch(self, key_id: str, at: datetime) -> None:
        with self._state.transaction() as conn:
            conn.execute("UPDATE api_keys SET last_used_at = ? WHERE id = ?", (_iso(at), key_id))


class LocalAttempts:
    def __init__(self, state: StateFile) -> None:
        self._state = state
        state.add_setup(SETUP)

    def counts(self, address: str, key_id: str, since: datetime) -> tuple[int, int, int]:
        with self._state.transaction() as conn:
            row = conn.execute(
                "SELECT count(*) FILTER (WHERE address = ?), count(*) FILTER (WHERE key_id = ?),"
                " count(*) FILTER (WHERE address = ? AND key_id = ?)"
                " FROM api_key_failures WHERE at >= ?",
                (address, key_id, address, key_id, _iso(since)),
            ).fetchone()
        return int(row[0]), int(row[1]), int(row[2])

    def fail(self, address: str, key_id: str, at: datetime) -> None:
        with self._state.transaction() as conn:
            conn.execute("DELETE FROM api_key_failures WHERE at < ?", (_iso(at - _HOUR),))
            conn.execute(
                "INSERT INTO api_key_failures (address, key_id, at) VALUES (?, ?, ?)",
                (address, key_id, _iso(at)),
            )
