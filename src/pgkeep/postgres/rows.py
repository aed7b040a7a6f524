"""Rows and sizes of a dump's snapshot: the exact counts its manifest records, and the
estimate its progress is measured against.

Counts are taken in the dump's own snapshot, so they describe exactly the data in
the dump: on a second connection that imports the snapshot and counts while pg_dump
runs, or, for a database under INLINE_COUNT_BYTES, on the dump's own connection once
pg_dump is done (a second connection costs more than the overlap saves). An error
while counting (a table the role may not read) costs the counts, never the dump.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import Callable
from typing import Any, Protocol

import psycopg
from psycopg import sql

from pgkeep.core.control import Control
from pgkeep.errors import PgkeepError
from pgkeep.postgres import catalog, server
from pgkeep.postgres.connection import Connection

logger = logging.getLogger(__name__)

# Below this size rows are counted on the dump's own connection once pg_dump is done:
# a second connection (~4 ms of SCRAM on each side) costs more than the overlap saves.
INLINE_COUNT_BYTES = 8 * 1024 * 1024
_TABLE_LINE = re.compile(r"dumping contents of table ")


class RowCounter(Protocol):
    """Row counts of the dump's snapshot, read when the dump is done."""

    def cancel(self) -> None: ...

    def join(self) -> None: ...

    def result(self) -> dict[str, int] | None: ...


class InlineCounter:
    """Counts rows of a small database after pg_dump is done, in the dump's own snapshot
    (the exporting transaction, still open), inside a savepoint so an error there is
    only a missing count."""

    def __init__(self, conn: psycopg.Connection[Any], max_bytes: int, size: int) -> None:
        self._conn = conn
        self._skip = bool(max_bytes and size > max_bytes)
        self._counts: dict[str, int] | None = None
        self._done = False

    def cancel(self) -> None:
        self._done = True

    def join(self) -> None:
        pass

    def result(self) -> dict[str, int] | None:
        if self._done or self._skip:
            return self._counts
        self._done = True
        conn = self._conn
        try:
            conn.execute("SAVEPOINT pgkeep_count")
            conn.execute("SET LOCAL max_parallel_workers_per_gather = 0")
            self._counts = catalog.row_counts(conn)
            conn.execute("RELEASE SAVEPOINT pgkeep_count")
        except psycopg.Error as exc:
            logger.warning("row counts unavailable: %s", str(exc).strip())
            with contextlib.suppress(psycopg.Error):
                conn.execute("ROLLBACK TO SAVEPOINT pgkeep_count")
        return self._counts


class Counter:
    """Counts rows in the dump's snapshot on its own connection and thread, while pg_dump runs.

    Skipped (None) when the database is larger than `max_bytes` (0: never skip).
    """

    def __init__(self, target: Connection, snapshot: str, max_bytes: int) -> None:
        self._target = target
        self._snapshot = snapshot
        self._max_bytes = max_bytes
        self._conn: psycopg.Connection[Any] | None = None
        self._counts: dict[str, int] | None = None
        self._cancelled = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            with server.connect(self._target, autocommit=False) as conn:
                self._conn = conn
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                conn.execute(
                    sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(self._snapshot))
                )
                # One backend, not a leader and workers: counting shares the CPU with
                # pg_dump and its backend, and finishing early gains nothing (measured:
                # parallel count(*) used ~1.8x the CPU time of a serial one).
                conn.execute("SET LOCAL max_parallel_workers_per_gather = 0")
                size = catalog.database_size(conn)
                if self._max_bytes and size > self._max_bytes:
                    logger.info("row counts skipped: database is %d bytes", size)
                    return
                self._counts = catalog.row_counts(conn)
                conn.rollback()
        except (psycopg.Error, PgkeepError) as exc:
            level = logging.DEBUG if self._cancelled else logging.WARNING
            logger.log(level, "row counts unavailable: %s", self._target.redact(str(exc).strip()))

    def cancel(self) -> None:
        self._cancelled = True
        if self._conn is not None:
            self._conn.cancel_safe()

    def join(self) -> None:
        self._thread.join()

    def result(self) -> dict[str, int] | None:
        self.join()
        return self._counts


# The progress estimate waits at most this long for any table's lock: pg_table_size
# takes an ACCESS SHARE lock, and a table locked exclusively must not hold up the dump.
ESTIMATE_LOCK_TIMEOUT = "200ms"


def expect(conn: psycopg.Connection[Any], control: Control) -> Callable[[str], None]:
    """Tell the control what to expect (tables, bytes); return the stderr line counter."""
    tables, table_bytes = _estimate(conn)
    # Text dumps run close to the tables' size on disk. Unknown (0): no percent at all,
    # never a guess that runs ahead of the bytes.
    control.expected_bytes = table_bytes or None
    control.report(tables_total=tables)
    done = 0

    def on_line(line: str) -> None:
        nonlocal done
        if _TABLE_LINE.search(line):
            done += 1
            control.report(tables_done=done)

    return on_line


def _estimate(conn: psycopg.Connection[Any]) -> tuple[int, int]:
    """(user tables, their size in bytes), in a savepoint of the dump's own transaction.

    pg_table_size is right without ANALYZE (relpages is 0 until then, which showed 99%
    from the first event). It takes each table's ACCESS SHARE lock, which pg_dump takes
    too; where one is not granted within ESTIMATE_LOCK_TIMEOUT, relpages. The savepoint
    keeps a lock timeout from aborting the transaction that exports the snapshot.
    """
    query = (
        "SELECT pg_catalog.count(*), coalesce(pg_catalog.sum({size}), 0)"
        " FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
    )
    relpages = "c.relpages::bigint * pg_catalog.current_setting('block_size')::int"
    conn.execute("SAVEPOINT pgkeep_estimate")
    conn.execute(f"SET LOCAL lock_timeout = '{ESTIMATE_LOCK_TIMEOUT}'")
    try:
        row = conn.execute(query.format(size="pg_catalog.pg_table_size(c.oid)")).fetchone()
    except psycopg.errors.LockNotAvailable:
        conn.execute("ROLLBACK TO SAVEPOINT pgkeep_estimate")
        row = conn.execute(query.format(size=relpages)).fetchone()
    conn.execute("RESET lock_timeout")
    conn.execute("RELEASE SAVEPOINT pgkeep_estimate")
    return (int(row[0]), int(row[1])) if row else (0, 0)
