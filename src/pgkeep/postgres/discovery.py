"""What a server holds: its databases (for `[servers.KEY]`), and what its role may read."""

from __future__ import annotations

import psycopg

from pgkeep.errors import DatabaseUnavailable
from pgkeep.postgres import server
from pgkeep.postgres.connection import Connection


def databases(admin: Connection) -> list[str]:
    """Databases that can be dumped: not templates, and accepting connections."""
    with server.connect(admin) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE NOT datistemplate AND datallowconn"
            " ORDER BY datname"
        ).fetchall()
    return [str(r[0]) for r in rows]


def can_read_role_passwords(admin: Connection) -> bool:
    """Whether pg_dumpall may dump role passwords (it needs to read pg_authid)."""
    try:
        with server.connect(admin) as conn:
            row = conn.execute("SELECT has_table_privilege('pg_authid', 'SELECT')").fetchone()
    except psycopg.Error as exc:
        raise DatabaseUnavailable(f"cannot ask {admin.address}", str(exc)) from None
    return bool(row and row[0])
