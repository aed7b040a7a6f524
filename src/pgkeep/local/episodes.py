"""Alert episodes in pgkeep's state file (core.ports.Episodes): when a target was first seen
and which alerts are open, so "once per episode" survives restarts; and the scheduled
slots that could not run (core.health.MissedSlots), so a target stays failing across
restarts."""

from __future__ import annotations

from datetime import datetime

from pgkeep.core.health import Missed
from pgkeep.local.state import StateFile

SETUP = """
CREATE TABLE IF NOT EXISTS seen (target TEXT PRIMARY KEY, at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS episodes (
    kind TEXT NOT NULL, target TEXT NOT NULL, since TEXT NOT NULL, PRIMARY KEY (kind, target)
);
CREATE TABLE IF NOT EXISTS missed (
    target TEXT NOT NULL, kind TEXT NOT NULL, slot TEXT NOT NULL, cause TEXT NOT NULL,
    PRIMARY KEY (target, kind)
);
"""


class LocalEpisodes:
    def __init__(self, state: StateFile) -> None:
        self._state = state
        state.add_setup(SETUP)

    def first_seen(self, target: str, now: datetime) -> datetime:
        with self._state.transaction() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO seen (target, at) VALUES (?, ?)", (target, now.isoformat())
            )
            row = conn.execute("SELECT at FROM seen WHERE target = ?", (target,)).fetchone()
        return datetime.fromisoformat(str(row[0]))

    def open(self, kind: str, target: str, since: datetime) -> bool:
        with self._state.transaction() as conn:
            done = conn.execute(
                "INSERT OR IGNORE INTO episodes (kind, target, since) VALUES (?, ?, ?)",
                (kind, target, since.isoformat()),
            )
            return done.rowcount == 1

    def close(self, kind: str, target: str) -> None:
        with self._state.transaction() as conn:
            conn.execute("DELETE FROM episodes WHERE kind = ? AND target = ?", (kind, target))

    def miss(self, target: str, missed: Missed) -> None:
        with self._state.transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO missed (target, kind, slot, cause) VALUES (?, ?, ?, ?)",
                (target, missed.kind, missed.slot.isoformat(), missed.cause),
            )

    def missed(self) -> dict[str, list[Missed]]:
        with self._state.transaction() as conn:
            rows = conn.execute("SELECT target, kind, slot, cause FROM missed").fetchall()
        found: dict[str, list[Missed]] = {}
        for target, kind, slot, cause in rows:
            missed = Missed(str(kind), datetime.fromisoformat(str(slot)), str(cause))
            found.setdefault(str(target), []).append(missed)
        return found
