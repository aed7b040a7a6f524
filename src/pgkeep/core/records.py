"""Saving this process's jobs on the board, and saving again what could not be saved.

A job that ends while its process is cut off from the board (the control database down)
cannot record how it ended; left so, whoever reaps its lapsed lease would record only
"instance X stopped". Its record is kept here and saved at the next beat that reaches the
board (core/leases.py), so the job's own ending ("cut off from the control database",
its error, or success) is what everyone reads.
"""

from __future__ import annotations

import logging
import threading

from pgkeep.core.jobs import Job, JobBoard
from pgkeep.errors import PgkeepError

logger = logging.getLogger(__name__)


class Records:
    """One lock over every save: a retry never writes an older state over a newer one."""

    def __init__(self, board: JobBoard) -> None:
        self._board = board
        self._unsaved: dict[str, Job] = {}
        self._lock = threading.Lock()

    def save(self, job: Job) -> None:
        """Save `job`; on failure keep it (the newest state of each job) for `retry`."""
        with self._lock:
            try:
                self._board.save(job)
            except PgkeepError as exc:
                name = self._board.name
                logger.error("could not record job %s on %s: %s", job.id, name, exc.message)
                self._unsaved[job.id] = job
                return
            self._unsaved.pop(job.id, None)

    def retry(self) -> list[str]:
        """Save the records whose save failed; the ids saved now. Stops quietly at the first
        failure (still cut off: the next beat tries again)."""
        saved = []
        with self._lock:
            for job_id, job in list(self._unsaved.items()):
                try:
                    self._board.save(job)
                except PgkeepError:
                    break
                del self._unsaved[job_id]
                saved.append(job_id)
                logger.info("job %s recorded on %s after all", job_id, self._board.name)
        return saved

    @property
    def waiting(self) -> int:
        with self._lock:
            return len(self._unsaved)
