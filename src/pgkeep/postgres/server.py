"""Connecting to a server (psycopg): every session pinned, failures mapped to DatabaseUnavailable.

Every connection pgkeep opens, to any database, has `search_path` pinned to
`pg_catalog, pg_temp` as a connection option (a later `SET` would leave a window,
and a function an owner put in `public` with a better-matching signature than
`pg_catalog.format` would run as pgkeep), confirmed before the first query because
a pooler may drop startup options. Sessions also set `client_connection_check_interval`,
so a backend whose client died (a killed pgkeep) stops waiting within seconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from pgkeep.errors import DatabaseUnavailable
from pgkeep.postgres.connection import Connection
from pgkeep.postgres.process import CLIENT_CHECK_INTERVAL

SEARCH_PATH = "pg_catalog, pg_temp"
PINNED = "-c search_path=pg_catalog,pg_temp"
CHECK_INTERVAL = f"-c client_connection_check_interval={CLIENT_CHECK_INTERVAL}"  # 14 and newer


class Unpinned(psycopg.Error):
    """The server did not take the pinned search_path (a pooler dropped the option)."""


def options(conninfo: str, *, check_interval: bool = True) -> str:
    """libpq `options` for a session: the target's own, then pgkeep's pins (later wins)."""
    own = str(conninfo_to_dict(conninfo).get("options") or "")
    pins = [PINNED, CHECK_INTERVAL] if check_interval else [PINNED]
    return " ".join(p for p in (own, *pins) if p)


def open_connection(target: Connection, **kwargs: Any) -> psycopg.Connection[Any]:
    """A new session on `target`, pinned; psycopg.Error (Unpinned) when it cannot be."""
    try:
        conn = psycopg.connect(
            target.conninfo,
            password=target.password,
            options=options(target.conninfo),
            **kwargs,
        )
    except psycopg.OperationalError as exc:
        if "client_connection_check_interval" not in str(exc):  # PostgreSQL 13 lacks it
            raise
        conn = psycopg.connect(
            target.conninfo,
            password=target.password,
            options=options(target.conninfo, check_interval=False),
            **kwargs,
        )
    try:
        confirm_pinned(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def confirm_pinned(conn: psycopg.Connection[Any]) -> None:
    """Refuse a session whose search_path is not the pinned one."""
    autocommit = conn.autocommit
    row = conn.execute("SELECT pg_catalog.current_setting('search_path')").fetchone()
    if not autocommit:
        conn.rollback()
    found = _value(row)
    if [part.strip() for part in found.split(",")] != ["pg_catalog", "pg_temp"]:
        raise Unpinned(
            f"search_path is {found!r}, not {SEARCH_PATH!r}: a connection pooler between "
            "pgkeep and the server dropped its startup options; connect pgkeep directly"
        )


def _value(row: Any) -> str:
    if row is None:
        return ""
    return str(row["current_setting"] if isinstance(row, dict) else row[0])


@contextmanager
def connect(target: Connection, *, autocommit: bool = True) -> Iterator[psycopg.Connection[Any]]:
    try:
        conn = open_connection(target, autocommit=autocommit)
    except psycopg.Error as exc:
        raise DatabaseUnavailable(
            f"cannot connect to database {target.dbname!r} at {target.address}",
            target.redact(str(exc).strip()),
        ) from None
    with conn:
        yield conn


def major_of(conn: psycopg.Connection[Any]) -> int:
    version = conn.info.server_version
    return version // 10000 if version >= 100000 else version // 100


def version_of(conn: psycopg.Connection[Any]) -> str:
    return (conn.info.parameter_status("server_version") or "").split(" ")[0]


def server_major(target: Connection) -> int:
    """The server's major version, e.g. 18; DatabaseUnavailable when it cannot be reached."""
    with connect(target) as conn:
        return major_of(conn)


def version_of_server(target: Connection) -> str:
    """The server's version, e.g. "18.6"; DatabaseUnavailable when it cannot be reached."""
    with connect(target) as conn:
        return version_of(conn)
