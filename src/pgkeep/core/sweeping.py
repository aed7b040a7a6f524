"""Sweeping what interrupted verifies and restores left: scratch and staging databases,
loader roles, staged archives, each named after its job (on rehearsal servers too)."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence

from pgkeep.core.ports import Restorer
from pgkeep.core.restore_rules import SCRATCH_PREFIX, STAGING_PREFIX
from pgkeep.errors import PgkeepError

logger = logging.getLogger(__name__)

_JOB_NAME = re.compile(r"[0-9a-f]{12,32}")


def sweep(
    scratch: Restorer,
    target: Restorer,
    finished: Callable[[str], bool],
    rehearsal: Sequence[Restorer] = (),
) -> list[str]:
    """Drop the scratch and staging databases and loader roles of jobs that are over
    (`finished(job_id)`: known here, and not running on any instance); the names."""
    dropped = []
    servers = [(scratch, SCRATCH_PREFIX), (target, STAGING_PREFIX)]
    for restorer, prefix in servers + [(r, SCRATCH_PREFIX) for r in rehearsal]:
        try:
            dropped += restorer.sweep_staged()
            for name in restorer.databases(prefix):
                if _ours_to_drop(name[len(prefix) :], finished):
                    restorer.drop(name)
                    dropped.append(name)
            for role in restorer.loaders():
                if _ours_to_drop(role.rsplit("_", 1)[-1], finished):
                    restorer.drop_loader(role)
                    dropped.append(role)
        except PgkeepError as exc:
            logger.warning("could not sweep %s* on %s: %s", prefix, restorer.server, exc.message)
    for name in dropped:
        logger.warning("dropped %s left by an interrupted verify or restore", name)
    return dropped


def _ours_to_drop(job: str, finished: Callable[[str], bool]) -> bool:
    """A leftover whose job is over; one named by an earlier version (12 hex digits, no job)
    too. Another deployment's (an unknown job) is left alone."""
    if not _JOB_NAME.fullmatch(job):
        return False
    return len(job) == 12 or finished(job)
