"""Running jobs: one path, whoever asks (HTTP, the CLI, the scheduler) and wherever they are
recorded (a JobBoard: pgkeep's state file, or the control database).

A job is begun on the board (slots, the queue, one job per exclusive key across processes),
run on a thread here, its progress and end saved there; another process's job is read,
cancelled and waited for through the board. Own jobs are kept in memory too, so a waiter
wakes at once. A lease keeps each unfinished job ours (core/leases.py renews them).
"""

from __future__ import annotations

import builtins
import contextvars
import logging
import secrets
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from datetime import datetime
from typing import Any

from pgkeep.core import shutdown
from pgkeep.core.control import Control
from pgkeep.core.events import Actor, Events
from pgkeep.core.health import cause
from pgkeep.core.jobs import Drained, Job, JobBoard, JobKind, JobStatus, Pool, Work, stopped
from pgkeep.core.records import Records
from pgkeep.errors import Cancelled, Conflict, NotFound, PgkeepError, Unavailable

logger = logging.getLogger(__name__)

MAX_RECORDS = 10_000
MAX_OWN_FINISHED = 1_000  # finished jobs of this process kept in memory (the board keeps all)
POLL_SECONDS = 0.25  # how often another process's job, or a slot, is looked at


class JobRunner:
    """Runs this process's jobs on threads; answers for every process's from the board."""

    def __init__(
        self, board: JobBoard, clock: Callable[[], datetime], *, events: Events | None = None
    ) -> None:
        self.board = board
        self._clock = clock
        self._events = events
        self._jobs: dict[str, Job] = {}
        self._controls: dict[str, Control] = {}
        self._pools: dict[str, Pool] = {}
        self._changed = threading.Condition(threading.RLock())
        self._version = 0
        self._closing: str | None = None  # why no job is taken any more (shutting down)
        self.after_reaped: Callable[[Job], None] | None = None
        self.records = Records(board)  # saves this process's jobs, again after a failure

    def _reap(self) -> None:
        """Fail stopped processes' jobs and clean up after them (a create's same name)."""
        try:
            for job in self.board.reap():
                logger.error("job %s (%s %s): %s", job.id, job.kind, job.target, job.error)
                if self.after_reaped is not None:
                    self.after_reaped(job)
        except PgkeepError as exc:
            logger.warning("cleaning up after stopped jobs: %s", exc.message)

    def recover(self) -> list[Job]:
        """At start: fail the jobs whose process stopped (lease lapsed, or process gone)."""
        return self.board.reap()

    def submit(
        self,
        kind: JobKind,
        work: Work,
        *,
        pool: Pool,
        target: str = "",
        filename: str | None = None,
        created_by: str = "",
        exclusive: bool = False,
    ) -> Job:
        """Queue `work`; Conflict if exclusive and one of its kind runs for the target (in
        any process), Busy if the pool's queue is full, Unavailable while shutting down."""
        if self._closing is not None:
            raise Unavailable(self._closing, "try again, or another instance")
        queued = Job(
            secrets.token_hex(8),
            kind,
            JobStatus.QUEUED,
            filename,
            self._clock(),
            created_by,
            target=target,
            owner=self.board.instance,
        )
        if exclusive:
            self._reap()
        free = self.board.begin(queued, pool, f"{kind}:{target}" if exclusive else None)
        job = replace(queued, status=JobStatus.RUNNING) if free else queued
        control = Control(lambda: self._refresh(job.id), job.id)
        with self._changed:
            self._pools.setdefault(pool.name, pool)
            self._jobs[job.id] = job
            self._controls[job.id] = control
            self._touch()
        context = contextvars.copy_context()  # its log lines keep the request id
        threading.Thread(
            target=context.run,
            args=(self._run, job.id, work, control, pool.name, free),
            daemon=True,
        ).start()
        return job

    def get(self, job_id: str) -> Job:
        with self._changed:
            if job_id in self._jobs:
                return self._jobs[job_id]
        found = self.board.get(job_id)
        if found is None:
            raise NotFound(f"job {job_id[:32]!a} not found")
        return found

    def list(self) -> list[Job]:
        with self._changed:
            jobs = dict(self._jobs)
        for job in self.board.recent(MAX_RECORDS):
            jobs.setdefault(job.id, job)
        return sorted(jobs.values(), key=lambda j: j.started_at, reverse=True)

    def cancel(self, job_id: str, actor: Actor | None = None) -> Job:
        job = self.get(job_id)
        with self._audited("cancel-job", job, actor):
            control = self._controls.get(job_id)
            if job.status.finished:
                raise Conflict(f"job {job_id!r} has already finished ({job.status})")
            if control is None:  # another process's: it learns at its next heartbeat
                if self.board.request_cancel(job.id) is None:
                    raise Conflict(f"job {job.id!r} has already finished")
            else:
                control.cancel()
                with self._changed:
                    self._changed.notify_all()  # a queued job learns of it at once
        return self.wait(job_id, timeout=30)

    def _audited(
        self, action: str, job: Job, actor: Actor | None
    ) -> AbstractContextManager[object]:
        """An action on `job` asked for by `actor`, recorded; pgkeep's own are not."""
        if self._events is None or actor is None:
            return nullcontext()
        return self._events.action(action, job.target, actor, job.filename)

    def wait(self, job_id: str, timeout: float | None = None, after: int = -1) -> Job:
        """Block until the job finishes (or, with `after`, until any change past that version)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if job_id not in self._jobs:
            while True:  # another process's: poll the board
                job = self.get(job_id)
                remaining = None if deadline is None else deadline - time.monotonic()
                if job.status.finished or after >= 0 or (remaining is not None and remaining <= 0):
                    return job
                time.sleep(POLL_SECONDS if remaining is None else min(POLL_SECONDS, remaining))
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

    def own_unfinished(self) -> builtins.list[Job]:
        """This process's jobs not finished yet (their leases are renewed)."""
        with self._changed:
            return [j for j in self._jobs.values() if not j.status.finished]

    def close(self, reason: str) -> builtins.list[Job]:
        """Take no more jobs and hand back the queued ones (core/shutdown.py)."""
        self._closing = reason
        return shutdown.hand_back(self, reason)

    def drain(self, deadline: float, reason: str, cleanup_seconds: float = 30.0) -> Drained:
        """Let running jobs finish until `deadline`, then cancel them (core/shutdown.py)."""
        return shutdown.drain(self, deadline, reason, cleanup_seconds)

    def stop_jobs(self, job_ids: builtins.list[str], reason: str, *, failed: bool = False) -> None:
        """Stop this process's jobs (queued ones never start; running ones are cancelled),
        recording `reason`; `failed`: a fault (a lost lease) stopped them: they fail."""
        with self._changed:
            controls = [self._controls[i] for i in job_ids if i in self._controls]
            self._changed.notify_all()
        for control in controls:
            if failed:
                control.fail(reason)
            else:
                control.cancel(reason)

    def _run(self, job_id: str, work: Work, control: Control, pool: str, started: bool) -> None:
        if not started and not self._wait_for_slot(job_id, control, pool):
            reason = "cancelled while queued" if control.reason == "cancelled" else control.reason
            self._finish(job_id, stopped(control), error=reason)
            return
        try:
            filename, result = work(control)
            self._finish(job_id, JobStatus.SUCCEEDED, filename=filename, result=result)
        except Cancelled:
            self._finish(job_id, stopped(control), error=control.reason)
        except PgkeepError as exc:
            status = stopped(control) if control.cancelled.is_set() else JobStatus.FAILED
            error = cause(exc.message, exc.details)  # the server's words first
            self._finish(job_id, status, error=error, details=exc.details, failure=exc)
        except Exception as exc:
            logger.exception("job %s failed unexpectedly", job_id)
            self._finish(job_id, JobStatus.FAILED, error="internal error", failure=exc)

    def _wait_for_slot(self, job_id: str, control: Control, pool: str) -> bool:
        """Ask the board, first in first out, until a slot is ours; False if cancelled."""
        while not control.cancelled.is_set():
            try:
                taken = self.board.take_slot(job_id, self._pools[pool])
            except PgkeepError as exc:
                logger.warning("job %s: cannot ask for a slot: %s", job_id, exc.message)
                taken = False
            if taken:
                with self._changed:
                    self._jobs[job_id] = replace(self._jobs[job_id], status=JobStatus.RUNNING)
                    self._touch()
                return True
            with self._changed:  # a job of ours finishing wakes it early
                self._changed.wait(POLL_SECONDS)
        return False

    def _refresh(self, job_id: str) -> None:
        with self._changed:
            control = self._controls.get(job_id)
            if control is None:
                return
            job = self._jobs[job_id]
            named = control.filename is not None and control.filename != job.filename
            job = self._jobs[job_id] = replace(
                job, progress=control.progress, filename=control.filename or job.filename
            )
            self._touch()
        if named:
            # Saved before anything is written under the name: sweeps see it is live.
            self._save(job)

    def _touch(self) -> None:
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
            self._save(self._jobs[job_id])  # recorded before any waiter sees the job finished
            self._touch()

    def _prune(self) -> None:
        """Forget own finished jobs past MAX_OWN_FINISHED (the board keeps them longer)."""
        finished = sorted(
            (j for j in self._jobs.values() if j.status.finished), key=lambda j: j.started_at
        )
        for job in finished[: max(0, len(finished) - MAX_OWN_FINISHED)]:
            del self._jobs[job.id]

    def _save(self, job: Job) -> None:
        self.records.save(job)
