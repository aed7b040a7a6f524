"""The job board in the control database (core.jobs.JobBoard), shared by every instance.

`pgkeep.jobs` holds every instance's jobs. A unique index on the exclusive key of
unfinished jobs makes "one create per target" hold across instances; each pool's
slots and queue are counted under a transaction-scoped advisory lock per pool; a
job's owner renews `lease_until`, and a job whose lease lapsed is failed by any
instance ("instance X stopped").
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
from datetime import timedelta
from typing import Any

import psycopg

from pgkeep.core.control import Progress
from pgkeep.core.jobs import Job, JobKind, JobStatus, Pool
from pgkeep.errors import Busy, Conflict
from pgkeep.postgres.control.database import ControlDatabase

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
CREATE TABLE IF NOT EXISTS pgkeep.tickets (
    nonce text PRIMARY KEY,
    expires_at timestamptz NOT NULL
);
"""
_COLUMNS = (
    "id, kind, target, status, filename, created_by, started_at, finished_at, progress,"
    " error, details, owner, lease_until"
)
# Composed from constants only: no value is ever formatted into SQL.
_SELECT = f"SELECT {_COLUMNS} FROM pgkeep.jobs"  # noqa: S608
_CANCEL = (
    "UPDATE pgkeep.jobs SET cancel_requested = true WHERE id = %s"  # noqa: S608
    f" AND status IN ('queued', 'running') RETURNING {_COLUMNS}"
)
_REAP = (
    "UPDATE pgkeep.jobs SET status = 'failed', finished_at = now(),"  # noqa: S608
    " error = 'instance ' || owner || ' stopped',"
    " details = 'its lease lapsed at ' || lease_until::text"
    f" WHERE status IN ('queued', 'running') AND lease_until < now() RETURNING {_COLUMNS}"
)


def instance_name() -> str:
    """This process, as other instances name it in messages: host, pid and a nonce."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(2)}"


class PgJobBoard:
    """core.jobs.JobBoard in the control database."""

    name = "the control database"

    def __init__(
        self,
        database: ControlDatabase,
        *,
        lease_seconds: float = 30.0,
        keep_for: timedelta = timedelta(days=7),
        instance: str | None = None,
    ) -> None:
        self.instance = instance or instance_name()
        self.lease_seconds = lease_seconds
        self.young_seconds = lease_seconds  # another machine's clock, and its slow naming
        self.database = database
        self.connection = database.connection
        self._keep_for = keep_for

    @property
    def where(self) -> str:
        return self.database.where

    def close(self) -> None:
        self.database.close()

    # -- jobs ------------------------------------------------------------------------

    def begin(self, job: Job, pool: Pool, exclusive_key: str | None) -> bool:
        with self.connection() as conn, conn.transaction():
            _lock_pool(conn, pool.name)
            row: Any = conn.execute(
                "SELECT count(*) FILTER (WHERE status = 'running') AS running,"
                " count(*) FILTER (WHERE status = 'queued') AS queued FROM pgkeep.jobs"
                " WHERE pool = %s AND status IN ('queued', 'running') AND lease_until > now()",
                (pool.name,),
            ).fetchone()
            running, queued = int(row["running"]), int(row["queued"])
            free = running < pool.slots and queued == 0
            if not free and pool.queue is not None and queued >= pool.queue:
                raise Busy(
                    f"too many {job.kind} jobs already waiting ({queued} queued, "
                    f"{running} running on all instances)",
                    "try again later",
                    retry_after=10,
                )
            try:
                with conn.transaction():
                    conn.execute(
                        "INSERT INTO pgkeep.jobs (id, kind, target, pool, status, filename,"
                        " created_by, started_at, owner, lease_until, exclusive_key)"
                        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s,"
                        " now() + make_interval(secs => %s), %s)",
                        (
                            job.id,
                            str(job.kind),
                            job.target,
                            pool.name,
                            "running" if free else "queued",
                            job.filename,
                            job.created_by,
                            job.started_at,
                            self.instance,
                            self.lease_seconds,
                            exclusive_key,
                        ),
                    )
            except psycopg.errors.UniqueViolation:
                holder = conn.execute(
                    _SELECT + " WHERE exclusive_key = %s AND status IN ('queued', 'running')",
                    (exclusive_key,),
                ).fetchone()
                other = f"{holder['id']} on instance {holder['owner']}" if holder else "?"
                raise Conflict(
                    f"a {job.kind} job is already running for {job.target!r}: {other}",
                    "wait for it to finish, then try again",
                ) from None
        return free

    def take_slot(self, job_id: str, pool: Pool) -> bool:
        with self.connection() as conn, conn.transaction():
            _lock_pool(conn, pool.name)
            row: Any = conn.execute(
                "SELECT count(*) AS running FROM pgkeep.jobs WHERE pool = %s"
                " AND status = 'running' AND lease_until > now()",
                (pool.name,),
            ).fetchone()
            if int(row["running"]) >= pool.slots:
                return False
            first = conn.execute(
                "SELECT id FROM pgkeep.jobs WHERE pool = %s AND status = 'queued'"
                " AND lease_until > now() AND NOT cancel_requested"
                " ORDER BY started_at, id LIMIT 1",
                (pool.name,),
            ).fetchone()
            if first is None or first["id"] != job_id:
                return False
            taken = conn.execute(
                "UPDATE pgkeep.jobs SET status = 'running' WHERE id = %s AND owner = %s"
                " AND status = 'queued' RETURNING 1",
                (job_id, self.instance),
            ).fetchone()
            return taken is not None

    def save(self, job: Job) -> None:
        with self.connection() as conn:
            conn.execute(
                "UPDATE pgkeep.jobs SET status = %s, filename = %s, progress = %s,"
                " finished_at = %s, error = %s, details = %s WHERE id = %s AND owner = %s",
                (
                    str(job.status),
                    job.filename,
                    json.dumps(_progress(job.progress)),
                    job.finished_at,
                    job.error,
                    job.details,
                    job.id,
                    self.instance,
                ),
            )

    def heartbeat(self, jobs: list[Job]) -> dict[str, bool]:
        rows = [
            {"id": j.id, "progress": _progress(j.progress), "filename": j.filename} for j in jobs
        ]
        with self.connection() as conn:
            held = conn.execute(
                "UPDATE pgkeep.jobs AS j SET lease_until = now() + make_interval(secs => %s),"
                " progress = d.progress, filename = coalesce(d.filename, j.filename)"
                " FROM jsonb_to_recordset(%s::jsonb) AS d(id text, progress jsonb, filename text)"
                " WHERE j.id = d.id AND j.owner = %s AND j.status IN ('queued', 'running')"
                " RETURNING j.id, j.cancel_requested",
                (self.lease_seconds, json.dumps(rows), self.instance),
            ).fetchall()
        return {str(r["id"]): bool(r["cancel_requested"]) for r in held}

    def get(self, job_id: str) -> Job | None:
        with self.connection() as conn:
            row = conn.execute(_SELECT + " WHERE id = %s", (job_id[:64],)).fetchone()
        return _job(row) if row else None

    def recent(self, limit: int) -> list[Job]:
        with self.connection() as conn:
            rows = conn.execute(_SELECT + " ORDER BY started_at DESC LIMIT %s", (limit,)).fetchall()
        return [_job(r) for r in rows]

    def request_cancel(self, job_id: str) -> Job | None:
        with self.connection() as conn:
            row = conn.execute(_CANCEL, (job_id,)).fetchone()
        return _job(row) if row else None

    def reap(self) -> list[Job]:
        with self.connection() as conn:
            rows = conn.execute(_REAP).fetchall()
            conn.execute(
                "DELETE FROM pgkeep.jobs WHERE finished_at < now() - make_interval(secs => %s)",
                (self._keep_for.total_seconds(),),
            )
        return [_job(r) for r in rows]

    def live(self) -> list[Job]:
        with self.connection() as conn:
            rows = conn.execute(
                _SELECT + " WHERE status = 'running' AND lease_until > now()"
            ).fetchall()
        return [_job(r) for r in rows]


def _lock_pool(conn: psycopg.Connection[Any], pool: str) -> None:
    conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"pgkeep-pool:{pool}",))


def _progress(p: Progress) -> list[Any]:
    return [p.bytes_written, p.tables_done, p.tables_total, p.percent, p.eta_seconds]


def _job(row: dict[str, Any]) -> Job:
    p = row["progress"] or [0, 0, None, None, None]
    return Job(
        id=str(row["id"]),
        kind=JobKind(row["kind"]),
        status=JobStatus(row["status"]),
        filename=row["filename"],
        started_at=row["started_at"],
        created_by=str(row["created_by"]),
        finished_at=row["finished_at"],
        progress=Progress(int(p[0]), int(p[1]), p[2], p[3], p[4]),
        error=row["error"],
        details=str(row["details"] or ""),
        target=str(row["target"]),
        owner=str(row["owner"]),
    )
