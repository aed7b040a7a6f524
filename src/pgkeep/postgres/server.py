"""Asking the target server about itself over a real connection (psycopg)."""

from __future__ import annotations

import psycopg

from pgkeep.errors import DatabaseUnavailable
from pgkeep.postgres.target import Target


def server_major(target: Target) -> int:
    """The server's major version, e.g. 18; DatabaseUnavailable when it cannot be reached."""
    try:
        with psycopg.connect(target.conninfo, password=target.password, autocommit=True) as conn:
            version = conn.info.server_version
    except psycopg.Error as exc:
        raise DatabaseUnavailable(
            f"cannot connect to database {target.dbname!r} at {target.address}",
            target.redact(str(exc).strip()),
        ) from None
    return version // 10000 if version >= 100000 else version // 100
