"""Jobs: long work (create, verify, restore) run on a thread, watched and cancellable.

A job outlives the request that started it. Its `Control` is what the work
reports progress to and what cancellation goes through: adapters register a
callback (kill pg_dump) so that a cancel lands even while the tool is blocked.
Job records are kept in storage so a restart can mark interrupted ones failed.
"""

from __future__ import annotations

import contextvars
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from pgkeep import formats
from pgkeep.core.ports import Storage
from pgkeep.errors import Cancelled, Conflict, NotFound, PgkeepError

logger = logging.getLogger(__name__)

JOBS_OBJECT = "pgkeep-jobs.json"
KEEP_FINISHED = 100


class JobKind(StrEnum):
    CREATE = "create"
    VERIFY = "verify"
    RESTORE = "restore"


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


@dataclass(frozen=True)
class Progress:
    bytes_written: int = 0
    tables_done: int = 0
    tables_total: int | None = None
    percent: float | None = None
    eta_seconds: float | None = None


@dataclass(frozen=True)
class Job:
    id: str
    kind: JobKind
    status: JobStatus
    filename: str | None
    started_at: datetime
    created_by: str = ""
    finished_at: datetime | None = None
    progress: Progress = field(default_factory=Progress)
    error: str | None = None
    details: str = ""
    result: Any = None


class Control:
    """Handed to running work: report progress, learn of and react to cancellation."""

    def __init__(self, on_change: Callable[[], None]) -> None:
        self.cancelled = threading.Event()
        self._callbacks: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._on_change = on_change
        self.progress = Progress()
        self.filename: str | None = None
        self._started = time.monotonic()
        self.expected_bytes: int | None = None

    def on_cancel(self, callback: Callable[[], None]) -> None:
        with self._lock:
            self._callbacks.append(callback)
            run_now = self.cancelled.is_set()
        if run_now:
            callback()

    def cancel(self) -> None:
        self.cancelled.set()
        with self._lock:
            callbacks = list(self._callbacks)
        for callback in callbacks:
            callback()

    def check(self) -> None:
        if self.cancelled.is_set():
            raise Cancelled("the job was cancelled")

    def report(self, **changes: Any) -> None:
        progress = replace(self.progress, **changes)
        if self.expected_bytes:
            done = progress.bytes_written / self.expected_bytes
            percent = min(99.0, round(done * 100, 1))
            elapsed = time.monotonic() - self._started
            eta = elapsed * (100 - percent) / percent if percent > 0 else None
            progress = replace(progress, percent=percent, eta_seconds=eta and round(eta, 1))
        self.progress = progress
        self._on_change()

    def name(self, filename: str) -> None:
        self.filename = filename
        self._on_change()


Work = Callable[[Control], tuple[str | None, Any]]


class JobRunner:
    """Runs jobs on threads and keeps their records (recent first) in memory and storage."""

    def __init__(self, storage: Storage, clock: Callable[[], datetime]) -> None:
        self._storage = storage
        self._clock = clock
        self._jobs: dict[str, Job] = {}
        self._controls: dict[str, Control] = {}
        # An RLock underneath: records are saved while it is held, so saves never
        # interleave and a finished job is on disk before a waiter wakes.
        self._changed = threading.Condition(threading.RLock())
        self._version = 0

    def recover(self) -> list[Job]:
        """At start: load records; those left queued or running were interrupted."""
        interrupted = []
        for job in _load(self._storage):
            if not job.status.finished:
                job = replace(
                    job,
                    status=JobStatus.FAILED,
                    finished_at=self._clock(),
                    error="interrupted by a restart of pgkeep",
                )
                interrupted.append(job)
                logger.warning(
                    "job %s (%s %s) was interrupted by a restart",
                    job.id,
                    job.kind,
                    job.filename or "",
                )
            self._jobs[job.id] = job
        if interrupted:
            with self._changed:
                self._save()
        return interrupted

    def submit(
        self,
        kind: JobKind,
        work: Work,
        *,
        filename: str | None = None,
        created_by: str = "",
        exclusive: bool = False,
    ) -> Job:
        with self._changed:
            if exclusive:
                running = [
                    j for j in self._jobs.values() if j.kind is kind and not j.status.finished
                ]
                if running:
                    raise Conflict(
                        f"a {kind} job is already running: {running[0].id}",
                        f"watch it at /api/backup/jobs/{running[0].id}",
                    )
            job = Job(
                secrets.token_hex(8), kind, JobStatus.RUNNING, filename, self._clock(), created_by
            )
            control = Control(lambda: self._refresh(job.id))
            self._jobs[job.id] = job
            self._controls[job.id] = control
            self._save()
        # In a copy of the caller's context: the job's log lines keep its request id.
        context = contextvars.copy_context()
        threading.Thread(
            target=context.run, args=(self._run, job.id, work, control), daemon=True
        ).start()
        return job

    def get(self, job_id: str) -> Job:
        with self._changed:
            if job_id not in self._jobs:
                raise NotFound(f"job {job_id[:32]!r} not found")
            return self._jobs[job_id]

    def list(self) -> list[Job]:
        with self._changed:
            return sorted(self._jobs.values(), key=lambda j: j.started_at, reverse=True)

    def cancel(self, job_id: str) -> Job:
        job = self.get(job_id)
        control = self._controls.get(job_id)
        if job.status.finished or control is None:
            raise Conflict(f"job {job_id!r} has already finished ({job.status})")
        control.cancel()
        return self.wait(job_id, timeout=30)

    def wait(self, job_id: str, timeout: float | None = None, after: int = -1) -> Job:
        """Block until the job finishes (or, with `after`, until any change past that version)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            while True:
                job = self._jobs[job_id]
                if job.status.finished or (after >= 0 and self._version > after):
                    return job
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return job
                self._changed.wait(remaining)

    @property
    def version(self) -> int:
        return self._version

    def _run(self, job_id: str, work: Work, control: Control) -> None:
        try:
            filename, result = work(control)
            self._finish(job_id, JobStatus.SUCCEEDED, filename=filename, result=result)
        except Cancelled:
            self._finish(job_id, JobStatus.CANCELLED, error="cancelled")
        except PgkeepError as exc:
            status = JobStatus.CANCELLED if control.cancelled.is_set() else JobStatus.FAILED
            self._finish(job_id, status, error=exc.message, details=exc.details, failure=exc)
        except Exception as exc:
            logger.exception("job %s failed unexpectedly", job_id)
            self._finish(job_id, JobStatus.FAILED, error="internal error", failure=exc)

    def _refresh(self, job_id: str) -> None:
        with self._changed:
            control = self._controls.get(job_id)
            if control is None:
                return
            job = self._jobs[job_id]
            self._jobs[job_id] = replace(
                job, progress=control.progress, filename=control.filename or job.filename
            )
            self._version += 1
            self._changed.notify_all()

    def _finish(
        self,
        job_id: str,
        status: JobStatus,
        *,
        filename: str | None = None,
        result: Any = None,
        error: str | None = None,
        details: str = "",
        failure: BaseException | None = None,
    ) -> None:
        with self._changed:
            control = self._controls.pop(job_id, None)
            job = self._jobs[job_id]
            progress = control.progress if control else job.progress
            if status is JobStatus.SUCCEEDED:
                progress = replace(progress, percent=100.0, eta_seconds=0.0)
            self._jobs[job_id] = replace(
                job,
                status=status,
                finished_at=self._clock(),
                progress=progress,
                filename=filename or (control.filename if control else None) or job.filename,
                error=error,
                details=details,
                result=failure if failure else result,
            )
            self._prune()
            self._save()  # durable before any waiter sees the job finished
            self._version += 1
            self._changed.notify_all()

    def _prune(self) -> None:
        finished = sorted(
            (j for j in self._jobs.values() if j.status.finished), key=lambda j: j.started_at
        )
        for job in finished[:-KEEP_FINISHED]:
            del self._jobs[job.id]

    def _save(self) -> None:
        with self._changed:
            records = [job_json(j) for j in self._jobs.values()]
        try:
            self._storage.put(JOBS_OBJECT, json.dumps(records).encode())
        except PgkeepError as exc:
            logger.error("could not save job records: %s", exc.message)


def job_json(job: Job) -> dict[str, Any]:
    """The API's view of a job (camelCase, as the spec's other bodies)."""
    p = job.progress
    return {
        "id": job.id,
        "kind": str(job.kind),
        "status": str(job.status),
        "filename": job.filename,
        "startedAt": formats.iso_ms(job.started_at),
        "finishedAt": formats.iso_ms(job.finished_at) if job.finished_at else None,
        "progress": {
            "bytesWritten": p.bytes_written,
            "tablesDone": p.tables_done,
            "tablesTotal": p.tables_total,
            "percent": p.percent,
            "etaSeconds": p.eta_seconds,
        },
        "error": job.error,
        "details": job.details,
        "createdBy": job.created_by,
    }


def _load(storage: Storage) -> list[Job]:
    try:
        handle = storage.open_read(JOBS_OBJECT)
    except NotFound:
        return []
    try:
        records = json.loads(b"".join(handle.iter_range(0, handle.info.size_bytes)))
        return [_from_record(r) for r in records]
    except (ValueError, KeyError, TypeError) as exc:
        logger.error("ignoring unreadable job records: %s", exc)
        return []
    finally:
        handle.close()


def _from_record(r: dict[str, Any]) -> Job:
    p = r["progress"]
    return Job(
        id=r["id"],
        kind=JobKind(r["kind"]),
        status=JobStatus(r["status"]),
        filename=r["filename"],
        started_at=_time(r["startedAt"]),
        created_by=r.get("createdBy", ""),
        finished_at=_time(r["finishedAt"]) if r["finishedAt"] else None,
        progress=Progress(
            p["bytesWritten"], p["tablesDone"], p["tablesTotal"], p["percent"], p["etaSeconds"]
        ),
        error=r["error"],
        details=r.get("details", ""),
    )


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
