"""The databases `[servers.*]` have been found to hold, in the control database
(core.ports.KnownTargets), shared by every instance: a database dropped since stays a
target, marked gone, with its backups, until its backups are deleted."""

from __future__ import annotations

from pgkeep.postgres.control.database import ControlDatabase


class PgKnownTargets:
    def __init__(self, database: ControlDatabase) -> None:
        self._database = database

    def remember(self, server: str, databases: list[str]) -> None:
        with self._database.connection() as conn:
            conn.execute(
                "INSERT INTO pgkeep.found (server, database)"
                " SELECT %s, d FROM unnest(%s::text[]) AS d ON CONFLICT DO NOTHING",
                (server, databases),
            )

    def known(self, server: str) -> list[str]:
        with self._database.connection() as conn:
            rows = conn.execute(
                "SELECT database FROM pgkeep.found WHERE server = %s ORDER BY 1", (server,)
            ).fetchall()
        return [str(r["database"]) for r in rows]

    def forget(self, server: str, database: str) -> None:
        with self._database.connection() as conn:
            conn.execute(
                "DELETE FROM pgkeep.found WHERE server = %s AND database = %s", (server, database)
            )
