"""A shutting-down runner: queued jobs handed back at once, running ones given the grace
period, then cancelled and waited for while they clean up after themselves."""

from __future__ import annotations

import time
from typing import Protocol

from pgkeep.core.jobs import Drained, Job, JobStatus


class JobRunner(Protocol):
    """What shutting down uses of core/runner.py's JobRunner."""

    def own_unfinished(self) -> list[Job]: ...

    def stop_jobs(self, job_ids: list[str], reason: str) -> None: ...

    def wait(self, job_id: str, timeout: float | None = None) -> Job: ...

    def get(self, job_id: str) -> Job: ...


HAND_BACK_SECONDS = 5.0  # how long closing waits for queued jobs to record they were handed back


def hand_back(runner: JobRunner, reason: str) -> list[Job]:
    """The queued jobs end as cancelled, not started, with `reason`; once their threads
    recorded that (so a drain that follows never counts them among those that finished)."""
    queued = [j for j in runner.own_unfinished() if j.status is JobStatus.QUEUED]
    runner.stop_jobs([j.id for j in queued], f"not started: {reason}")
    _wait_all(runner, {j.id for j in queued}, time.monotonic() + HAND_BACK_SECONDS)
    return queued


def drain(runner: JobRunner, deadline: float, reason: str, cleanup_seconds: float) -> Drained:
    """Let running jobs finish until `deadline` (time.monotonic()); cancel the rest with
    `reason` and wait (at most `cleanup_seconds`) while they clean up after themselves."""
    running = {j.id for j in runner.own_unfinished()}
    left = _wait_all(runner, running, deadline)
    runner.stop_jobs(sorted(left), reason)
    stuck = _wait_all(runner, left, time.monotonic() + cleanup_seconds)
    return Drained(sorted(running - left), sorted(left - stuck), sorted(stuck))


def _wait_all(runner: JobRunner, ids: set[str], until: float) -> set[str]:
    """Wait for the jobs until `until`; those not finished by then."""
    for job_id in sorted(ids):
        runner.wait(job_id, timeout=max(0.0, until - time.monotonic()))
    return {i for i in ids if not runner.get(i).status.finished}
