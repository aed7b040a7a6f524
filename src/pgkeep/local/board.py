"""The job board in pgkeep's state file (core.jobs.JobBoard), for the processes of one
machine: `pgkeep serve` and the CLI see, exclude and cancel one another's jobs.

The same rules as the control database's board (postgres/control/board.py): a unique
index on the exclusive key of unfinished jobs (one create per target), each pool's
slots and queue counted inside one `BEGIN IMMEDIATE` transaction, leases renewed by
their process. A job whose process is gone (on this machine) is failed at once, one
whose lease lapsed by whoever looks first.
"""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from pgkeep.core.control import Progress
from pgkeep.core.jobs import Job, JobKind, JobStatus, Pool
from pgkeep.errors import Busy, Conflict
from pgkeep.local.processes import gone as _gone
from pgkeep.local.processes import instance_name
from pgkeep.local.processes import who as _who
from pgkeep.local.state import StateFile

SETUP = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    pool TEXT NOT NULL,
    status TEXT NOT NULL,
    filename TEXT,
    created_by TEXT NOT NULL DEFAULT '',
    started_at TEXT NOT NULL,
    finished_at TEXT,
    progress TEXT NOT NULL DEFAULT '[0, 0, null, null, null]',
    error TEXT,
    details TEXT NOT NULL DEFAULT '',
    owner TEXT NOT NULL,
    lease_until REAL NOT NULL,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    exclusive_key TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_one_per_key ON jobs (exclusive_key)
    WHERE status IN ('queued', 'running');
CREATE INDEX IF NOT EXISTS jobs_started ON jobs (started_at);
"""


class LocalJobBoard:
    """core.jobs.JobBoard in pgkeep's state file."""

    name = "pgkeep's state file"
    young_seconds = 0.0  # one machine: a create's name is on the board before its file

    def __init__(
        self,
        state: StateFile,
        *,
        lease_seconds: float = 30.0,
        keep_for: timedelta = timedelta(days=7),
        instance: str | None = None,
    ) -> None:
        self.instance = instance or instance_name()
        self.lease_seconds = lease_seconds
        self._state = state
        self._keep_for = keep_for
        state.add_setup(SETUP)

    @property
    def where(self) -> str:
        return self._state.where

    def begin(self, job: Job, pool: Pool, exclusive_key: str | None) -> bool:
        with self._state.transaction() as conn:
            now = time.time()
            # A holder whose process is gone (a CLI killed with no server to notice) or whose
            # lease lapsed blocks nothing: it is failed here, before counting or excluding.
            _reap_in(conn, now)
            running, queued = conn.execute(
                "SELECT count(*) FILTER (WHERE status = 'running'),"
                " count(*) FILTER (WHERE status = 'queued') FROM jobs"
                " WHERE pool = ? AND status IN ('queued', 'running') AND lease_until > ?",
                (pool.name, now),
            ).fetchone()
            free = bool(running < pool.slots and queued == 0)
            if not free and pool.queue is not None and queued >= pool.queue:
                raise Busy(
                    f"too many {job.kind} jobs already waiting ({queued} queued, "
                    f"{running} running)",
                    "try again later",
                    retry_after=10,
                )
            try:
                conn.execute(
                    "INSERT INTO jobs (id, kind, target, pool, status, filename, created_by,"
                    " started_at, owner, lease_until, exclusive_key)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        job.id,
                        str(job.kind),
                        job.target,
                        pool.name,
                        "running" if free else "queued",
                        job.filename,
                        job.created_by,
                        job.started_at.isoformat(),
                        self.instance,
                        now + self.lease_seconds,
                        exclusive_key,
                    ),
                )
            except sqlite3.IntegrityError:
                holder = conn.execute(
                    "SELECT id, owner FROM jobs WHERE exclusive_key = ?"
                    " AND status IN ('queued', 'running')",
                    (exclusive_key,),
                ).fetchone()
                other = f"{holder['id']} ({_who(holder['owner'])})" if holder else "?"
                raise Conflict(
                    f"a {job.kind} job is already running for {job.target!r}: {other}",
                    "wait for it to finish, then try again",
                ) from None
        return free

    def take_slot(self, job_id: str, pool: Pool) -> bool:
        with self._state.transaction() as conn:
            now = time.time()
            (running,) = conn.execute(
                "SELECT count(*) FROM jobs WHERE pool = ? AND status = 'running'"
                " AND lease_until > ?",
                (pool.name, now),
            ).fetchone()
            if running >= pool.slots:
                return False
            first = conn.execute(
                "SELECT id FROM jobs WHERE pool = ? AND status = 'queued' AND lease_until > ?"
                " AND NOT cancel_requested ORDER BY started_at, id LIMIT 1",
                (pool.name, now),
            ).fetchone()
            if first is None or first["id"] != job_id:
                return False
            taken = conn.execute(
                "UPDATE jobs SET status = 'running' WHERE id = ? AND owner = ?"
                " AND status = 'queued'",
                (job_id, self.instance),
            )
            return taken.rowcount == 1

    def save(self, job: Job) -> None:
        with self._state.transaction() as conn:
            conn.execute(
                "UPDATE jobs SET status = ?, filename = ?, progress = ?, finished_at = ?,"
                " error = ?, details = ? WHERE id = ? AND owner = ?",
                (
                    str(job.status),
                    job.filename,
                    json.dumps(_progress(job.progress)),
                    job.finished_at.isoformat() if job.finished_at else None,
                    job.error,
                    job.details,
                    job.id,
                    self.instance,
                ),
            )

    def heartbeat(self, jobs: list[Job]) -> dict[str, bool]:
        held: dict[str, bool] = {}
        with self._state.transaction() as conn:
            until = time.time() + self.lease_seconds
            for job in jobs:
                row = conn.execute(
                    "UPDATE jobs SET lease_until = ?, progress = ?,"
                    " filename = coalesce(?, filename) WHERE id = ? AND owner = ?"
                    " AND status IN ('queued', 'running') RETURNING cancel_requested",
                    (
                        until,
                        json.dumps(_progress(job.progress)),
                        job.filename,
                        job.id,
                        self.instance,
                    ),
                ).fetchone()
                if row is not None:
                    held[job.id] = bool(row[0])
        return held

    def get(self, job_id: str) -> Job | None:
        with self._state.transaction() as conn:
            row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id[:64],)).fetchone()
        return _job(row) if row else None

    def recent(self, limit: int) -> list[Job]:
        with self._state.transaction() as conn:
            rows = conn.execute(
                "SELECT * FROM jobs ORDER BY started_at DESC LIMIT ?", (limit,)
            ).fetchall()
        return [_job(r) for r in rows]

    def request_cancel(self, job_id: str) -> Job | None:
        with self._state.transaction() as conn:
            row = conn.execute(
                "UPDATE jobs SET cancel_requested = 1 WHERE id = ?"
                " AND status IN ('queued', 'running')"
                " RETURNING *",
                (job_id,),
            ).fetchone()
        return _job(row) if row else None

    def reap(self) -> list[Job]:
        with self._state.transaction() as conn:
            now = time.time()
            reaped = _reap_in(conn, now)
            horizon = datetime.fromtimestamp(now - self._keep_for.total_seconds(), UTC)
            conn.execute("DELETE FROM jobs WHERE finished_at < ?", (horizon.isoformat(),))
        return reaped

    def live(self) -> list[Job]:
        with self._state.transaction() as conn:
            rows = conn.execute(
                "SELECT * FROM jobs WHERE status = 'running' AND lease_until > ?", (time.time(),)
            ).fetchall()
        return [_job(r) for r in rows]

    def close(self) -> None:
        self._state.close()


def _reap_in(conn: sqlite3.Connection, now: float) -> list[Job]:
    """Fail the unfinished jobs whose process is gone (on this machine, in this PID
    namespace) or whose lease lapsed, inside the caller's transaction."""
    reaped = []
    finished = datetime.fromtimestamp(now, UTC).isoformat()
    unfinished = "SELECT * FROM jobs WHERE status IN ('queued', 'running')"
    for row in conn.execute(unfinished).fetchall():
        if _gone(row["owner"]):
            error = "interrupted by a restart of pgkeep"
            details = f"{_who(row['owner'])} is gone"
        elif row["lease_until"] < now:
            error, details = f"instance {row['owner']} stopped", "its lease lapsed"
        else:
            continue
        updated = conn.execute(
            "UPDATE jobs SET status = 'failed', finished_at = ?, error = ?, details = ?"
            " WHERE id = ? RETURNING *",
            (finished, error, details, row["id"]),
        ).fetchone()
        reaped.append(_job(updated))
    return reaped


def _progress(p: Progress) -> list[Any]:
    return [p.bytes_written, p.tables_done, p.tables_total, p.percent, p.eta_seconds]


def _job(row: sqlite3.Row) -> Job:
    p = json.loads(row["progress"] or "[0, 0, null, null, null]")
    return Job(
        id=str(row["id"]),
        kind=JobKind(row["kind"]),
        status=JobStatus(row["status"]),
        filename=row["filename"],
        started_at=datetime.fromisoformat(row["started_at"]),
        created_by=str(row["created_by"]),
        finished_at=datetime.fromisoformat(row["finished_at"]) if row["finished_at"] else None,
        progress=Progress(int(p[0]), int(p[1]), p[2], p[3], p[4]),
        error=row["error"],
        details=str(row["details"] or ""),
        target=str(row["target"]),
        owner=str(row["owner"]),
    )
