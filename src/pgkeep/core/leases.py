"""Leases: how several processes share jobs without two of them doing one target's work.

Each process (an instance, or the CLI while its job runs) renews the lease of every
job it owns about once a second, which also publishes their progress and brings back
cancel requests made in other processes.
A job whose lease lapsed (its instance was killed, or cut off) is marked failed by
whichever instance notices first, and its leftovers are removed.

Fencing: an instance that cannot renew for half the lease stops its own running
jobs (pg_dump stopped, upload abandoned) before anyone else may take them over, so
two dumps of one target never overlap.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from pgkeep.core.jobs import Job, JobBoard
from pgkeep.core.runner import JobRunner
from pgkeep.errors import PgkeepError

logger = logging.getLogger(__name__)

BEAT_SECONDS = 1.0
REAP_EVERY = 5  # beats between looks for lapsed leases


class Leases:
    def __init__(
        self,
        jobs: JobRunner,
        coordination: JobBoard,
        on_reaped: Callable[[Job], None],
        *,
        beat: float = BEAT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._jobs = jobs
        self._coordination = coordination
        self._on_reaped = on_reaped
        self._beat = beat
        self._clock = clock
        self._last_renewed = clock()
        self._beats = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="leases", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.wait(self._beat):
            try:
                self.beat()
            except Exception:  # the keeper must outlive any one failure
                logger.exception("lease keeping failed")

    def beat(self) -> None:
        """One round: renew, act on cancel requests and lost leases, fence, and now and
        then reap other instances' lapsed jobs."""
        own = self._jobs.own_unfinished()
        asked = self._clock()
        try:
            held = self._coordination.heartbeat(own) if own else {}
        except PgkeepError as exc:
            self._unrenewed(own, exc)
            return
        self._last_renewed = asked
        self._jobs.records.retry()
        lost = [j.id for j in own if j.id not in held]
        if lost:
            logger.error("jobs %s lost their lease to another instance: stopped", lost)
            self._jobs.stop_jobs(
                lost, "stopped: its lease lapsed and another instance took over", failed=True
            )
        cancelled = [job_id for job_id, cancel in held.items() if cancel]
        if cancelled:
            self._jobs.stop_jobs(cancelled, "cancelled")
        self._beats += 1
        if self._beats % REAP_EVERY == 1:
            self.reap()

    def _unrenewed(self, own: list[Job], exc: PgkeepError) -> None:
        silent = self._clock() - self._last_renewed
        half = self._coordination.lease_seconds / 2
        logger.warning("cannot renew job leases for %.1f s: %s", silent, exc.message)
        if silent >= half and own:
            logger.error(
                "cut off from %s for %.1f s (half the lease): stopping %d job(s)",
                self._coordination.name,
                silent,
                len(own),
            )
            self._jobs.stop_jobs(
                [j.id for j in own],
                f"stopped: cut off from {self._coordination.name} for {silent:.0f} s, so that "
                "no other instance's run of it could overlap",
                failed=True,
            )

    def reap(self) -> list[Job]:
        """Fail the jobs whose instance stopped renewing, and clean up after them."""
        try:
            reaped = self._coordination.reap()
        except PgkeepError as exc:
            logger.warning("cannot look for lapsed leases: %s", exc.message)
            return []
        for job in reaped:
            logger.error("job %s (%s %s): %s", job.id, job.kind, job.target, job.error)
            try:
                self._on_reaped(job)
            except PgkeepError as exc:
                logger.error("cleaning up after job %s failed: %s", job.id, exc.message)
        return reaped
