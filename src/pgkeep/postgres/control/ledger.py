"""The control database's tables: the schedule ledger and the audit log's anchor.

The control database is PGKEEP_SCHEDULE_DATABASE (default `postgres`) on the
target's server; it must not be the target, so dumps never contain it.
`pgkeep.schedule_runs` records which slot each scheduled run claimed (the primary
key makes a claim atomic across processes; an advisory lock on the same server
is held while a run lasts). `pgkeep.audit_anchor` keeps the audit chain's head,
away from the log file, and never lets it move backwards.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import psycopg

from pgkeep.errors import DatabaseUnavailable, StorageError
from pgkeep.postgres import server
from pgkeep.postgres.connection import Connection

_SETUP = """
CREATE SCHEMA IF NOT EXISTS pgkeep;
CREATE TABLE IF NOT EXISTS pgkeep.schedule_runs (
    target text NOT NULL,
    kind text NOT NULL,
    slot timestamptz NOT NULL,
    claimed_by text NOT NULL,
    claimed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (target, kind, slot)
);
CREATE TABLE IF NOT EXISTS pgkeep.audit_anchor (
    log text PRIMARY KEY,
    seq bigint NOT NULL,
    hash text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
)
"""


def setup(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    """Create pgkeep's tables if missing; two processes creating them at once is fine."""
    for _ in range(3):  # one loses the race, then sees them
        try:
            conn.execute(_SETUP)
            return
        except (psycopg.errors.UniqueViolation, psycopg.errors.DuplicateObject):
            continue


class PgLedger:
    def __init__(self, ledger: Connection, target: str) -> None:
        self._ledger = ledger
        self._target = target
        self._ready = False

    def _setup(self, conn: psycopg.Connection[tuple[object, ...]]) -> None:
        if not self._ready:
            setup(conn)
            self._ready = True

    def claim(self, kind: str, slot: datetime, by: str) -> bool:
        with server.connect(self._ledger) as conn:
            self._setup(conn)
            row = conn.execute(
                "INSERT INTO pgkeep.schedule_runs (target, kind, slot, claimed_by)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1",
                (self._target, kind, slot, by),
            ).fetchone()
            return row is not None

    def has_runs(self, kind: str) -> bool:
        with server.connect(self._ledger) as conn:
            self._setup(conn)
            row = conn.execute(
                "SELECT 1 FROM pgkeep.schedule_runs WHERE target = %s AND kind = %s LIMIT 1",
                (self._target, kind),
            ).fetchone()
            return row is not None

    @contextmanager
    def running(self, kind: str) -> Iterator[bool]:
        key = int.from_bytes(
            hashlib.sha256(f"pgkeep:{self._target}:{kind}".encode()).digest()[:8],
            "big",
            signed=True,
        )
        with server.connect(self._ledger) as conn:
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
            acquired = bool(row and row[0])
            try:
                yield acquired
            finally:
                if acquired:
                    with contextlib.suppress(psycopg.Error):  # the lock dies with the session
                        conn.execute("SELECT pg_advisory_unlock(%s)", (key,))


class PgAuditAnchor:
    """The audit chain's head for one log file, kept in the control database.

    One connection is kept open and reused (a new one per audited action cost ~4 ms
    of SCRAM on each side); a broken one is replaced on the next call.
    """

    def __init__(self, control: Connection, log: str) -> None:
        self._control = control
        self._log = log
        self._ready = False
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None
        self._lock = threading.Lock()

    def load(self) -> tuple[int, str] | None:
        with self._connect() as conn:
            row = conn.execute(
                "SELECT seq, hash FROM pgkeep.audit_anchor WHERE log = %s", (self._log,)
            ).fetchone()
        return (int(str(row[0])), str(row[1])) if row else None

    def save(self, seq: int, digest: str) -> None:
        with self._connect() as conn:
            row = conn.execute(
                "INSERT INTO pgkeep.audit_anchor AS a (log, seq, hash) VALUES (%s, %s, %s)"
                " ON CONFLICT (log) DO UPDATE SET seq = excluded.seq, hash = excluded.hash,"
                " updated_at = now() WHERE a.seq < excluded.seq RETURNING 1",
                (self._log, seq, digest),
            ).fetchone()
        if row is None:
            raise StorageError(
                f"the audit log's head (seq {seq}) is behind its anchor: entries were lost"
            )

    @contextmanager
    def _connect(self) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
        with self._lock:
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = server.open_connection(self._control, autocommit=True)
                    # Closed when the anchor goes, whoever forgets to close it.
                    weakref.finalize(self, self._conn.close)
                if not self._ready:
                    setup(self._conn)
                    self._ready = True
                yield self._conn
            except psycopg.Error as exc:
                if self._conn is not None:
                    self._conn.close()
                self._conn = None
                raise DatabaseUnavailable(
                    f"cannot use the control database {self._control.dbname!r}",
                    self._control.redact(str(exc).strip()),
                ) from None
