"""API keys and failed key attempts in the control database (core.apikeys.KeyStore and
Attempts): every instance honours the same keys, and a revocation is seen by all at
their next request (nothing is cached)."""

from __future__ import annotations

from datetime import datetime, timedelta

from pgkeep.core.credentials import ApiKey, record_of, row_of
from pgkeep.postgres.control.database import ControlDatabase

_HOUR = timedelta(hours=1)  # failures older than this are forgotten


class PgKeyStore:
    def __init__(self, database: ControlDatabase) -> None:
        self._database = database

    def add(self, key: ApiKey) -> None:
        with self._database.connection() as conn:
            conn.execute(
                "INSERT INTO pgkeep.api_keys (id, name, digest, scopes, targets, owner,"
                " created_at, expires_at, mac, parent)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                row_of(key),
            )

    def get(self, key_id: str) -> ApiKey | None:
        with self._database.connection() as conn:
            row = conn.execute("SELECT * FROM pgkeep.api_keys WHERE id = %s", (key_id,)).fetchone()
        return None if row is None else record_of(row)

    def list(self) -> list[ApiKey]:
        with self._database.connection() as conn:
            rows = conn.execute("SELECT * FROM pgkeep.api_keys ORDER BY created_at, id").fetchall()
        return [record_of(r) for r in rows]

    def revoke(self, key_id: str, at: datetime) -> bool:
        with self._database.connection() as conn:
            done = conn.execute(
                "UPDATE pgkeep.api_keys SET revoked_at = coalesce(revoked_at, %s) WHERE id = %s",
                (at, key_id),
            )
        return done.rowcount > 0

    def touch(self, key_id: str, at: datetime) -> None:
        with self._database.connection() as conn:
            conn.execute("UPDATE pgkeep.api_keys SET last_used_at = %s WHERE id = %s", (at, key_id))


class PgAttempts:
    def __init__(self, database: ControlDatabase) -> None:
        self._database = database

    def counts(self, address: str, key_id: str, since: datetime) -> tuple[int, int, int]:
        with self._database.connection() as conn:
            row = conn.execute(
                "SELECT count(*) FILTER (WHERE address = %s) AS a,"
                " count(*) FILTER (WHERE key_id = %s) AS k,"
                " count(*) FILTER (WHERE address = %s AND key_id = %s) AS m"
                " FROM pgkeep.api_key_failures WHERE at >= %s",
                (address, key_id, address, key_id, since),
            ).fetchone()
        assert row is not None  # noqa: S101 (an aggregate always answers)
        return int(row["a"]), int(row["k"]), int(row["m"])

    def fail(self, address: str, key_id: str, at: datetime) -> None:
        with self._database.connection() as conn:
            conn.execute("DELETE FROM pgkeep.api_key_failures WHERE at < %s", (at - _HOUR,))
            conn.execute(
                "INSERT INTO pgkeep.api_key_failures (address, key_id, at) VALUES (%s, %s, %s)",
                (address, key_id, at),
            )
