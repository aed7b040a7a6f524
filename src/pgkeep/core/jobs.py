"""Jobs: long work (create, verify, restore) run on threads, bounded, watched and cancellable.

A job outlives the request that started it. Work runs in pools: a pool has a
number of slots and a bounded queue, so a flood of requests waits its turn or
is refused with Busy (429) instead of starting hundreds of threads and test
restores. A job may be exclusive per key (one create per target): a second one
is refused with Conflict naming the first. Records are kept in storage, for a
set time, so a restart can mark interrupted jobs failed and answer for old ones.

With a Coordination (instances sharing a control database) the same state machine
asks it for slots, records every change in it, and answers for other instances'
jobs from it; a lease keeps each running job ours (core/leases.py renews them).

Over 300 lines: submit, the wait for a slot, the run and the finish are one state
machine under one lock; split apart, each part would need the others' state.
"""

from __future__ import annotations

import builtins
import contextvars
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from pgkeep.core.control import Control, Progress
from pgkeep.core.events import Actor, Event, Events
from pgkeep.errors import Busy, Cancelled, Conflict, NotFound, PgkeepError, Unavailable

logger = logging.getLogger(__name__)

MAX_RECORDS = 10_000
POLL_SECONDS = 0.25  # how often another instance's job, or a shared slot, is looked at
HAND_BACK_SECONDS = 5.0  # how long closing waits for queued jobs to record they were handed back


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
    target: str = ""


@dataclass(frozen=True)
class Pool:
    """Where jobs of some kinds run: `slots` at once, at most `queue` more waiting (None: any)."""

    name: str
    slots: int
    queue: int | None = None


class JobRecords(Protocol):
    """Where job records are kept between restarts."""

    def load(self) -> list[Job]: ...

    def save(self, jobs: list[Job]) -> None: ...


class Coordination(Protocol):
    """Jobs shared by every instance of one control database (PgCoordination): the records,
    one job per exclusive key, each pool's slots and queue counted across instances,
    leases on running work, and cancel requests from any instance."""

    instance: str
    lease_seconds: float

    def close(self) -> None:
        """Close the connections kept open (at the end of a shutdown)."""
        ...

    @property
    def where(self) -> str:
        """The control database, for messages (host:port/dbname)."""
        ...

    def control_id(self) -> str:
        """The control database's own id (the store's marker names it)."""
        ...

    def begin(self, job: Job, pool: Pool, exclusive_key: str | None) -> bool:
        """Record a new job (owned here): True when a slot was free, so it runs now (else
        queued). Conflict naming the job that holds `exclusive_key`; Busy past the queue."""
        ...

    def take_slot(self, job_id: str, pool: Pool) -> bool:
        """A queued job of this instance: start it, if it is first in line and a slot is free."""
        ...

    def save(self, job: Job) -> None: ...

    def heartbeat(self, jobs: list[Job]) -> dict[str, bool]:
        """Renew the leases of this instance's unfinished jobs (and publish their progress):
        for each still ours, whether a cancel was requested. One missing lost its lease."""
        ...

    def get(self, job_id: str) -> Job | None: ...

    def recent(self, limit: int) -> list[Job]: ...

    def request_cancel(self, job_id: str) -> Job | None: ...

    def reap(self) -> list[Job]:
        """Mark failed the unfinished jobs whose lease lapsed ("instance X stopped")."""
        ...

    def live(self) -> list[Job]:
        """Running jobs whose lease holds, on any instance."""
        ...

    def redeem_once(self, nonce: str, expires_at: datetime) -> bool:
        """True the first time a download ticket's nonce is redeemed, on any instance."""
        ...

    def announce(self, target: str) -> None:
        """Tell every instance that `target`'s backups changed."""
        ...

    def listen(self, on_change: Callable[[str], None], stop: threading.Event) -> None:
        """Call `on_change(target)` for each announcement ("*": maybe any) until `stop`."""
        ...


Work = Callable[[Control], tuple[str | None, Any]]


@dataclass(frozen=True)
class Drained:
    """What a shutdown did with the jobs that were running: finished in the grace period,
    cancelled and cleaned up, or still running when the process went (their leases lapse)."""

    finished: list[str]
    cancelled: list[str]
    stuck: list[str]


class JobRunner:
    """Runs jobs on threads and keeps their records (recent first) in memory and storage."""

    def __init__(
        self,
        records: JobRecords,
        clock: Callable[[], datetime],
        *,
        keep_for: timedelta = timedelta(days=7),
        events: Events | None = None,
        coordination: Coordination | None = None,
    ) -> None:
        self._records = records
        self.coordination = coordination
        self._clock = clock
        self._keep_for = keep_for
        self._events = events
        self._jobs: dict[str, Job] = {}
        self._controls: dict[str, Control] = {}
        self._pools: dict[str, Pool] = {}
        self._waiting: dict[str, list[str]] = {}
        self._running: dict[str, int] = {}
        # An RLock underneath: records are saved while it is held, so saves never
        # interleave and a finished job is on disk before a waiter wakes.
        self._changed = threading.Condition(threading.RLock())
        self._version = 0
        self._closing: str | None = None  # why no job is taken any more (shutting down)

    def recover(self) -> list[Job]:
        """At start: load records; those left queued or running were interrupted. Shared by
        instances, only jobs whose lease lapsed were: another instance's work goes on."""
        if self.coordination is not None:
            return self.coordination.reap()
        interrupted = []
        for job in self._records.load():
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
            self._jobs.setdefault(job.id, job)
        with self._changed:
            if self._prune() or interrupted:
                self._save()
        return interrupted

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
        """Queue `work`; Conflict if exclusive and one of its kind runs for the target,
        Busy if the pool's queue is full, Unavailable while shutting down."""
        if self._closing is not None:
            raise Unavailable(self._closing, "try again, or another instance")
        if self.coordination is not None:
            return self._submit_shared(kind, work, pool, target, filename, created_by, exclusive)
        with self._changed:
            if exclusive:
                self._refuse_second(kind, target)
            self._pools.setdefault(pool.name, pool)
            waiting = self._waiting.setdefault(pool.name, [])
            free = self._running.get(pool.name, 0) < pool.slots and not waiting
            if not free and pool.queue is not None and len(waiting) >= pool.queue:
                raise Busy(
                    f"too many {kind} jobs already waiting ({len(waiting)} queued, "
                    f"{pool.slots} running)",
                    "try again later",
                    retry_after=10,
                )
            status = JobStatus.RUNNING if free else JobStatus.QUEUED
            job = Job(
                secrets.token_hex(8),
                kind,
                status,
                filename,
                self._clock(),
                created_by,
                target=target,
            )
            control = Control(lambda: self._refresh(job.id))
            self._jobs[job.id] = job
            self._controls[job.id] = control
            if free:
                self._running[pool.name] = self._running.get(pool.name, 0) + 1
            else:
                waiting.append(job.id)
            self._save()
        self._start(job, work, control, pool, free)
        return job

    def _submit_shared(
        self,
        kind: JobKind,
        work: Work,
        pool: Pool,
        target: str,
        filename: str | None,
        created_by: str,
        exclusive: bool,
    ) -> Job:
        """`submit` with the other instances: the control database decides slots and queue."""
        assert self.coordination is not None  # noqa: S101 (the caller checked)
        with self._changed:
            if exclusive:
                self._refuse_second(kind, target)
        queued = Job(
            secrets.token_hex(8),
            kind,
            JobStatus.QUEUED,
            filename,
            self._clock(),
            created_by,
            target=target,
        )
        free = self.coordination.begin(queued, pool, f"{kind}:{target}" if exclusive else None)
        job = replace(queued, status=JobStatus.RUNNING) if free else queued
        control = Control(lambda: self._refresh(job.id))
        with self._changed:
            self._pools.setdefault(pool.name, pool)
            self._jobs[job.id] = job
            self._controls[job.id] = control
            if free:
                self._running[pool.name] = self._running.get(pool.name, 0) + 1
            self._touch()
        self._start(job, work, control, pool, free)
        return job

    def _start(self, job: Job, work: Work, control: Control, pool: Pool, free: bool) -> None:
        """The job's thread, in a copy of the caller's context: its log lines keep the
        request id."""
        context = contextvars.copy_context()
        threading.Thread(
            target=context.run,
            args=(self._run, job.id, work, control, pool.name, free),
            daemon=True,
        ).start()

    def _refuse_second(self, kind: JobKind, target: str) -> None:
        for j in self._jobs.values():
            if j.kind is kind and j.target == target and not j.status.finished:
                where = f" on instance {self.coordination.instance}" if self.coordination else ""
                raise Conflict(
                    f"a {kind} job is already running for {target!r}: {j.id}{where}",
                    "wait for it to finish, then try again",
                )

    def get(self, job_id: str) -> Job:
        with self._changed:
            if job_id in self._jobs:
                return self._jobs[job_id]
        found = self.coordination.get(job_id) if self.coordination else None
        if found is None:
            raise NotFound(f"job {job_id[:32]!a} not found")
        return found

    def list(self) -> list[Job]:
        with self._changed:
            jobs = dict(self._jobs)
        if self.coordination is not None:
            for job in self.coordination.recent(MAX_RECORDS):
                jobs.setdefault(job.id, job)
        return sorted(jobs.values(), key=lambda j: j.started_at, reverse=True)

    def cancel(self, job_id: str, actor: Actor | None = None) -> Job:
        job = self.get(job_id)
        control = self._controls.get(job_id)
        if job.status.finished:
            raise Conflict(f"job {job_id!r} has already finished ({job.status})")
        if control is None:
            return self._cancel_elsewhere(job, actor)
        control.cancel()
        with self._changed:
            self._changed.notify_all()  # a queued job learns of it at once
        if self._events is not None and actor is not None:
            self._events.emit(
                Event("cancel-job", "succeeded", job.target, self._clock(), actor, job.filename)
            )
        return self.wait(job_id, timeout=30)

    def _cancel_elsewhere(self, job: Job, actor: Actor | None) -> Job:
        """Another instance's job: ask it through the control database, then wait."""
        assert self.coordination is not None  # noqa: S101 (only shared jobs are elsewhere)
        if self.coordination.request_cancel(job.id) is None:
            raise Conflict(f"job {job.id!r} has already finished")
        if self._events is not None and actor is not None:
            self._events.emit(
                Event("cancel-job", "succeeded", job.target, self._clock(), actor, job.filename)
            )
        return self.wait(job.id, timeout=30)

    def wait(self, job_id: str, timeout: float | None = None, after: int = -1) -> Job:
        """Block until the job finishes (or, with `after`, until any change past that version)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            mine = job_id in self._jobs
        if not mine:
            return self._wait_elsewhere(job_id, deadline, after)
        with self._changed:
            while True:
                job = self._jobs[job_id]
                if job.status.finished or (after >= 0 and self._version > after):
                    return job
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return job
                self._changed.wait(remaining)

    def _wait_elsewhere(self, job_id: str, deadline: float | None, after: int) -> Job:
        """Poll the control database for another instance's job."""
        while True:
            job = self.get(job_id)
            remaining = None if deadline is None else deadline - time.monotonic()
            if job.status.finished or after >= 0 or (remaining is not None and remaining <= 0):
                return job
            time.sleep(min(POLL_SECONDS, remaining) if remaining is not None else POLL_SECONDS)

    @property
    def version(self) -> int:
        return self._version

    def own_unfinished(self) -> builtins.list[Job]:
        """This instance's jobs not finished yet (their leases are renewed)."""
        with self._changed:
            return [j for j in self._jobs.values() if not j.status.finished]

    def close(self, reason: str) -> builtins.list[Job]:
        """Take no more jobs (`reason` answers new submissions) and hand back the queued
        ones: they end as cancelled, not started, with `reason`. The handed-back jobs."""
        with self._changed:
            self._closing = reason
            queued = [j for j in self._jobs.values() if j.status is JobStatus.QUEUED]
        self.stop_jobs([j.id for j in queued], f"not started: {reason}")
        # Their threads record them: wait for that, so a drain that follows never counts
        # a handed-back job among those that finished.
        with self._changed:
            until = time.monotonic() + HAND_BACK_SECONDS
            while self._unfinished({j.id for j in queued}) and time.monotonic() < until:
                self._changed.wait(0.1)
        return queued

    def drain(self, deadline: float, reason: str, cleanup_seconds: float = 30.0) -> Drained:
        """Let running jobs finish until `deadline` (time.monotonic()); cancel the rest with
        `reason` and wait (at most `cleanup_seconds`) while they clean up after themselves."""
        with self._changed:
            running = {j.id for j in self._jobs.values() if not j.status.finished}
            while self._unfinished(running) and time.monotonic() < deadline:
                self._changed.wait(min(0.5, max(0.0, deadline - time.monotonic())))
            left = self._unfinished(running)
        self.stop_jobs(sorted(left), reason)
        with self._changed:
            until = time.monotonic() + cleanup_seconds
            while self._unfinished(left) and time.monotonic() < until:
                self._changed.wait(0.5)
            stuck = self._unfinished(left)
        return Drained(sorted(running - left), sorted(left - stuck), sorted(stuck))

    def _unfinished(self, ids: set[str]) -> set[str]:
        return {i for i in ids if i in self._jobs and not self._jobs[i].status.finished}

    def stop_jobs(self, job_ids: builtins.list[str], reason: str, *, failed: bool = False) -> None:
        """Stop this instance's jobs: queued ones do not start, running ones are cancelled
        (their pg_dump stopped, their upload abandoned), each recording `reason`; `failed`:
        a fault stopped them (a lost lease), so they fail rather than end cancelled."""
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
            self._finish(job_id, _stopped(control), pool, error=reason)
            return
        try:
            filename, result = work(control)
            self._finish(job_id, JobStatus.SUCCEEDED, pool, filename=filename, result=result)
        except Cancelled:
            self._finish(job_id, _stopped(control), pool, error=control.reason)
        except PgkeepError as exc:
            status = _stopped(control) if control.cancelled.is_set() else JobStatus.FAILED
            self._finish(job_id, status, pool, error=exc.message, details=exc.details, failure=exc)
        except Exception as exc:
            logger.exception("job %s failed unexpectedly", job_id)
            self._finish(job_id, JobStatus.FAILED, pool, error="internal error", failure=exc)

    def _wait_for_slot(self, job_id: str, control: Control, pool: str) -> bool:
        """Wait, first in first out, for a free slot; False if cancelled while waiting."""
        if self.coordination is not None:
            return self._wait_for_shared_slot(job_id, control, pool)
        with self._changed:
            while True:
                waiting = self._waiting[pool]
                if control.cancelled.is_set():
                    waiting.remove(job_id)
                    self._changed.notify_all()
                    return False
                if waiting[0] == job_id and self._running.get(pool, 0) < self._pools[pool].slots:
                    waiting.pop(0)
                    self._running[pool] = self._running.get(pool, 0) + 1
                    self._jobs[job_id] = replace(self._jobs[job_id], status=JobStatus.RUNNING)
                    self._touch()
                    return True
                self._changed.wait(1.0)

    def _wait_for_shared_slot(self, job_id: str, control: Control, pool: str) -> bool:
        """A slot counted across instances: ask the control database until one is ours."""
        assert self.coordination is not None  # noqa: S101 (the caller checked)
        while not control.cancelled.is_set():
            try:
                taken = self.coordination.take_slot(job_id, self._pools[pool])
            except PgkeepError as exc:
                logger.warning("job %s: cannot ask for a slot: %s", job_id, exc.message)
                taken = False
            if taken:
                with self._changed:
                    self._running[pool] = self._running.get(pool, 0) + 1
                    self._jobs[job_id] = replace(self._jobs[job_id], status=JobStatus.RUNNING)
                    self._touch()
                return True
            control.cancelled.wait(POLL_SECONDS)
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
        if named and self.coordination is not None:
            # Before anything is written under the name: another instance's sweep must
            # know it belongs to live work.
            self.coordination.save(job)

    def _touch(self) -> None:
        self._version += 1
        self._changed.notify_all()

    def _finish(
        self,
        job_id: str,
        status: JobStatus,
        pool: str,
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
            if job.status is JobStatus.RUNNING:
                self._running[pool] -= 1
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
            self._save(self._jobs[job_id])  # durable before any waiter sees the job finished
            self._touch()

    def _prune(self) -> int:
        """Forget finished jobs older than `keep_for`, and the oldest past MAX_RECORDS."""
        horizon = self._clock() - self._keep_for
        finished = sorted(
            (j for j in self._jobs.values() if j.status.finished), key=lambda j: j.started_at
        )
        excess = max(0, len(self._jobs) - MAX_RECORDS)
        gone = [
            job.id
            for index, job in enumerate(finished)
            if index < excess or (job.finished_at or job.started_at) < horizon
        ]
        for job_id in gone:
            del self._jobs[job_id]
        return len(gone)

    def _save(self, changed: Job | None = None) -> None:
        try:
            if self.coordination is None:
                self._records.save(list(self._jobs.values()))
            elif changed is not None:
                self.coordination.save(changed)
        except PgkeepError as exc:
            logger.error("could not save job records: %s", exc.message)


def _stopped(control: Control) -> JobStatus:
    """How a stopped job ends: failed when a fault stopped it (a lost lease), else cancelled."""
    return JobStatus.FAILED if control.failed else JobStatus.CANCELLED
