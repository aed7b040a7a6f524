"""Alert episodes in the control database (core.ports.Episodes): when a target was first
seen and which alerts are open, shared by every instance, so one alert per episode holds
across restarts and instances; and the scheduled slots that could not run
(core.health.MissedSlots)."""

from __future__ import annotations

from datetime import datetime

from pgkeep.core.health import Missed
from pgkeep.postgres.control.database import ControlDatabase


class PgEpisodes:
    def __init__(self, database: ControlDatabase) -> None:
        self._database = database

    def first_seen(self, target: str, now: datetime) -> datetime:
        with self._database.connection() as conn:
            conn.execute(
                "INSERT INTO pgkeep.seen (target, at) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                (target, now),
            )
            row = conn.execute("SELECT at FROM pgkeep.seen WHERE target = %s", (target,)).fetchone()
        assert row is not None  # noqa: S101 (inserted above)
        seen: datetime = row["at"]
        return seen

    def open(self, kind: str, target: str, since: datetime) -> bool:
        with self._database.connection() as conn:
            row = conn.execute(
                "INSERT INTO pgkeep.episodes (kind, target, since) VALUES (%s, %s, %s)"
                " ON CONFLICT DO NOTHING RETURNING 1",
                (kind, target, since),
            ).fetchone()
        return row is not None

    def close(self, kind: str, target: str) -> None:
        with self._database.connection() as conn:
            conn.execute(
                "DELETE FROM pgkeep.episodes WHERE kind = %s AND target = %s", (kind, target)
            )

    def miss(self, target: str, missed: Missed) -> None:
        with self._database.connection() as conn:
            conn.execute(
                "INSERT INTO pgkeep.missed (target, kind, slot, cause) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (target, kind) DO UPDATE"
                " SET slot = excluded.slot, cause = excluded.cause",
                (target, missed.kind, missed.slot, missed.cause),
            )

    def missed(self) -> dict[str, list[Missed]]:
        with self._database.connection() as conn:
            rows = conn.execute("SELECT target, kind, slot, cause FROM pgkeep.missed").fetchall()
        found: dict[str, list[Missed]] = {}
        for row in rows:
            missed = Missed(row["kind"], row["slot"], row["cause"])
            found.setdefault(row["target"], []).append(missed)
        return found
