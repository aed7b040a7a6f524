"""Jobs: long work (create, verify, restore) run on threads, bounded, watched and cancellable.

A job outlives the request that started it. Work runs in pools: a pool has a
number of slots and a bounded queue, so a flood of requests waits its turn or
is refused with Busy (429) instead of starting hundreds of threads and test
restores. A job may be exclusive per key (one create per target): a second one
is refused with Conflict naming the first. Every job is on a JobBoard (here the
types and the port; core/runner.py runs them), whichever process started it, so
the HTTP API, the CLI and the scheduler see and exclude one another's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from pgkeep.core.control import Control, Progress


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
    owner: str = ""  # the process that runs it (JobBoard.instance)


@dataclass(frozen=True)
class Pool:
    """Where jobs of some kinds run: `slots` at once, at most `queue` more waiting (None: any)."""

    name: str
    slots: int
    queue: int | None = None


class JobBoard(Protocol):
    """Where every process's jobs are recorded and decided: one job per exclusive key, each
    pool's slots and queue counted across processes, leases on unfinished work, cancel
    requests from anyone. Two boards: pgkeep's state file (local/board.py: the processes
    of one machine, `pgkeep serve` and the CLI) and the control database
    (postgres/control/board.py: every instance)."""

    instance: str  # this process, as the board and other processes name it
    lease_seconds: float
    # How young a leftover file must be to be left alone at a start: another process's
    # create may have made it without its name being on the board yet.
    young_seconds: float

    @property
    def name(self) -> str:
        """What it is, for messages ("the control database", "pgkeep's state file")."""
        ...

    @property
    def where(self) -> str:
        """Where it is, for messages (host:port/dbname, a path)."""
        ...

    def begin(self, job: Job, pool: Pool, exclusive_key: str | None) -> bool:
        """Record a new job (owned here): True when a slot was free, so it runs now (else
        queued). Conflict naming the job that holds `exclusive_key`; Busy past the queue."""
        ...

    def take_slot(self, job_id: str, pool: Pool) -> bool:
        """A queued job of this process: start it, if it is first in line and a slot is free."""
        ...

    def save(self, job: Job) -> None: ...

    def heartbeat(self, jobs: list[Job]) -> dict[str, bool]:
        """Renew the leases of this process's unfinished jobs (and publish their progress):
        for each still ours, whether a cancel was requested. One missing lost its lease."""
        ...

    def get(self, job_id: str) -> Job | None: ...

    def recent(self, limit: int) -> list[Job]: ...

    def request_cancel(self, job_id: str) -> Job | None: ...

    def reap(self) -> list[Job]:
        """Mark failed the unfinished jobs whose owner stopped ("instance X stopped"), and
        forget finished ones past their keeping time."""
        ...

    def live(self) -> list[Job]:
        """Running jobs whose lease holds, of any process."""
        ...

    def close(self) -> None:
        """Close what is kept open (at the end of a shutdown)."""
        ...


Work = Callable[[Control], tuple[str | None, Any]]


@dataclass(frozen=True)
class Drained:
    """What a shutdown did with the jobs that were running: finished in the grace period,
    cancelled and cleaned up, or still running when the process went (their leases lapse)."""

    finished: list[str]
    cancelled: list[str]
    stuck: list[str]


def stopped(control: Control) -> JobStatus:
    """How a stopped job ends: failed when a fault stopped it (a lost lease), else cancelled."""
    return JobStatus.FAILED if control.failed else JobStatus.CANCELLED
