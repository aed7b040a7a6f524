"""Readiness probes shared by every target on one server: asked now and then, kept a while.

A probe of the control database (critical: without it the schedule and shared state
stop) is kept a few seconds; one of whether restores can run on a server (making a
loader role and logging in as it, postgres/restore.py `check_loader`) is kept ten
minutes, and is never critical: a server where restores would fail still takes backups.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from pgkeep.core.models import Check
from pgkeep.errors import PgkeepError

logger = logging.getLogger(__name__)

RESTORE_KEEP_SECONDS = 600.0
CONTROL_KEEP_SECONDS = 5.0


class Probe:
    """`check()`: the answer of `ask` (what was found, or a PgkeepError saying what is wrong)."""

    def __init__(
        self,
        name: str,
        ask: Callable[[], str],
        *,
        keep_seconds: float,
        critical: bool,
        failing: str = "",
    ) -> None:
        self._name = name
        self._ask = ask
        self._keep = keep_seconds
        self._critical = critical
        self._failing = failing  # said before what is wrong
        self._lock = threading.Lock()
        self._found: tuple[float, Check] | None = None

    def check(self) -> Check:
        with self._lock:
            found = self._found
            if found is None or time.monotonic() - found[0] > self._keep:
                found = self._found = (time.monotonic(), self._probe())
            return found[1]

    def log(self) -> None:
        """At start: one line saying what is wrong (nothing when all is well)."""
        check = self.check()
        if not check.ok:
            logger.error("%s: %s", self._name, check.details)

    def _probe(self) -> Check:
        try:
            return Check(self._name, True, self._ask(), self._critical)
        except PgkeepError as exc:
            details = f"{self._failing}{exc.message} {exc.details}".strip()
            return Check(self._name, False, details, self._critical)


def restore_probe(name: str, ask: Callable[[], str]) -> Probe:
    return Probe(
        name,
        ask,
        keep_seconds=RESTORE_KEEP_SECONDS,
        critical=False,
        failing="restores and test restores will fail: ",
    )


def control_probe(ask: Callable[[], str]) -> Probe:
    return Probe("control", ask, keep_seconds=CONTROL_KEEP_SECONDS, critical=True)
