"""Connecting to a server (psycopg) with failures mapped to DatabaseUnavailable."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from pgkeep.errors import DatabaseUnavailable
from pgkeep.postgres.target import Target


@contextmanager
def connect(target: Target, *, autocommit: bool = True) -> Iterator[psycopg.Connection[Any]]:
    try:
        conn = psycopg.connect(target.conninfo, password=target.password, autocommit=autocommit)
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


def server_major(target: Target) -> int:
    """The server's major version, e.g. 18; DatabaseUnavailable when it cannot be reached."""
    with connect(target) as conn:
        return major_of(conn)


def version_of_server(target: Target) -> str:
    """The server's version, e.g. "18.6"; DatabaseUnavailable when it cannot be reached."""
    with connect(target) as conn:
        return version_of(conn)
