"""The control database's connection pool and tables, and its own id (stores' markers
name it, so a store says which control database it belongs to)."""

from __future__ import annotations

import logging
import queue
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.rows import dict_row

from pgkeep.errors import Unavailable
from pgkeep.postgres import server
from pgkeep.postgres.connection import Connection

logger = logging.getLogger(__name__)

_SETUP = """
CREATE SCHEMA IF NOT EXISTS pgkeep;
CREATE TABLE IF NOT EXISTS pgkeep.control (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE IF NOT EXISTS pgkeep.jobs (
    id text PRIMARY KEY,
    kind text NOT NULL,
    target text NOT NULL,
    pool text NOT NULL,
    status text NOT NULL,
    filename text,
    created_by text NOT NULL DEFAULT '',
    started_at timestamptz NOT NULL,
    finished_at timestamptz,
    progress jsonb NOT NULL DEFAULT '[0, 0, null, null, null]',
    error text,
    details text NOT NULL DEFAULT '',
    owner text NOT NULL,
    lease_until timestamptz NOT NULL,
    cancel_requested boolean NOT NULL DEFAULT false,
    exclusive_key text
);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_one_per_key ON pgkeep.jobs (exclusive_key)
    WHERE status IN ('queued', 'running');
CREATE INDEX IF NOT EXISTS jobs_unfinished ON pgkeep.jobs (pool, status, started_at)
    WHERE status IN ('queued', 'running');
CREATE INDEX IF NOT EXISTS jobs_started ON pgkeep.jobs (started_at);
CREATE TABLE IF NOT EXISTS pgkeep.seen (target text PRIMARY KEY, at timestamptz NOT NULL);
CREATE TABLE IF NOT EXISTS pgkeep.episodes (
    kind text NOT NULL,
    target text NOT NULL,
    since timestamptz NOT NULL,
    PRIMARY KEY (kind, target)
);
CREATE TABLE IF NOT EXISTS pgkeep.missed (
    target text NOT NULL,
    kind text NOT NULL,
    slot timestamptz NOT NULL,
    cause text NOT NULL,
    PRIMARY KEY (target, kind)
);
CREATE TABLE IF NOT EXISTS pgkeep.found (
    server text NOT NULL,
    database text NOT NULL,
    PRIMARY KEY (server, database)
);
CREATE TABLE IF NOT EXISTS pgkeep.tickets (
    nonce text PRIMARY KEY,
    expires_at timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS pgkeep.api_keys (
    id text PRIMARY KEY,
    name text NOT NULL,
    digest text NOT NULL,
    scopes text NOT NULL,
    targets text NOT NULL,
    owner text NOT NULL,
    created_at timestamptz NOT NULL,
    expires_at timestamptz,
    mac text NOT NULL,
    revoked_at timestamptz,
    last_used_at timestamptz,
    parent text
);
ALTER TABLE pgkeep.api_keys ADD COLUMN IF NOT EXISTS parent text;
CREATE TABLE IF NOT EXISTS pgkeep.api_key_failures (
    address text NOT NULL,
    key_id text NOT NULL,
    at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS api_key_failures_at ON pgkeep.api_key_failures (at);
CREATE TABLE IF NOT EXISTS pgkeep.idempotency (
    caller text NOT NULL,
    key text NOT NULL,
    fingerprint text NOT NULL,
    job_id text,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (caller, key)
);
"""

CONNECTIONS = 4


class ControlDatabase:
    """Connections to the control database (a few kept open), its tables made at first use."""

    name = "the control database"

    def __init__(self, control: Connection) -> None:
        self.target = control
        self._idle: queue.LifoQueue[psycopg.Connection[Any]] = queue.LifoQueue()
        self._ready = False

    @property
    def where(self) -> str:
        return f"{self.target.address}/{self.target.dbname}"

    def control_id(self) -> str:
        """This control database's own random id (made once, by whoever comes first)."""
        with self.connection() as conn:
            conn.execute(
                "INSERT INTO pgkeep.control (key, value) VALUES ('id', %s) ON CONFLICT DO NOTHING",
                (secrets.token_hex(16),),
            )
            row = conn.execute("SELECT value FROM pgkeep.control WHERE key = 'id'").fetchone()
        assert row is not None  # noqa: S101 (inserted above)
        return str(row["value"])

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        try:
            conn = self._idle.get_nowait()
        except queue.Empty:
            conn = None
        try:
            if conn is None or conn.closed:
                conn = server.open_connection(
                    self.target, autocommit=True, row_factory=dict_row, connect_timeout=5
                )
            if not self._ready:
                _setup(conn)
                self._ready = True
            yield conn
        except psycopg.Error as exc:
            if conn is not None:
                conn.close()
            raise Unavailable(
                f"cannot use the control database {self.where}",
                self.target.redact(str(exc).strip()),
            ) from None
        if not conn.closed and self._idle.qsize() < CONNECTIONS:
            self._idle.put(conn)
        else:
            conn.close()

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


def _setup(conn: psycopg.Connection[Any]) -> None:
    for _ in range(3):  # two instances creating the tables at once: one retries, sees them
        try:
            conn.execute(_SETUP)
            return
        except (psycopg.errors.UniqueViolation, psycopg.errors.DuplicateObject):
            continue
