"""The databases `[servers.*]` have been found to hold, in pgkeep's state file
(core.ports.KnownTargets): a database dropped since stays a target, marked gone, with its
backups, across restarts and in the CLI, until its backups are deleted."""

from __future__ import annotations

from pgkeep.local.state import StateFile

SETUP = """
CREATE TABLE IF NOT EXISTS found (
    server TEXT NOT NULL, database TEXT NOT NULL, PRIMARY KEY (server, database)
);
"""


class LocalKnownTargets:
    def __init__(self, state: StateFile) -> None:
        self._state = state
        state.add_setup(SETUP)

    def remember(self, server: str, databases: list[str]) -> None:
        with self._state.transaction() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO found (server, database) VALUES (?, ?)",
                [(server, d) for d in databases],
            )

    def known(self, server: str) -> list[str]:
        with self._state.transaction() as conn:
            rows = conn.execute(
                "SELECT database FROM found WHERE server = ? ORDER BY 1", (server,)
            ).fetchall()
        return [str(r[0]) for r in rows]

    def forget(self, server: str, database: str) -> None:
        with self._state.transaction() as conn:
            conn.execute("DELETE FROM found WHERE server = ? AND database = ?", (server, database))
