"""The schedule ledger: which slot each scheduled run claimed, kept on the target's server.

A table `pgkeep.schedule_runs` in the ledger database (PGKEEP_SCHEDULE_DATABASE,
default `postgres`, which must not be the target, so dumps never contain it).
The primary key makes a claim atomic across processes; an advisory lock on the
same server is held while a run lasts.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import psycopg

from pgkeep.postgres import server
from pgkeep.postgres.target import Target

_SETUP = """
CREATE SCHEMA IF NOT EXISTS pgkeep;
CREATE TABLE IF NOT EXISTS pgkeep.schedule_runs (
    target text NOT NULL,
    kind text NOT NULL,
    slot timestamptz NOT NULL,
    claimed_by text NOT NULL,
    claimed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (target, kind, slot)
)
"""


class PgLedger:
    def __init__(self, ledger: Target, target: str) -> None:
        self._ledger = ledger
        self._target = target
        self._ready = False

    def _setup(self, conn: psycopg.Connection[tuple[object, ...]]) -> None:
        if self._ready:
            return
        for _ in range(3):  # two processes creating it at once: one loses, then sees it
            try:
                conn.execute(_SETUP)
                break
            except (psycopg.errors.UniqueViolation, psycopg.errors.DuplicateObject):
                continue
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
