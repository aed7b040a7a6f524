"""Scheduled runs: cron slots (UTC), each run by exactly one of the processes sharing a target.

Every process computes the same slots; the first to claim a slot in the ledger
(on the target server) runs it, and an advisory lock held while it runs keeps a
late-waking process from overlapping it. After downtime, only the most recent
missed slot is run, once: a catch-up, never a replay of every missed slot.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from typing import Protocol

from cronsim import CronSim, CronSimError

from pgkeep.errors import ConfigError, PgkeepError

logger = logging.getLogger(__name__)


class Ledger(Protocol):
    def claim(self, kind: str, slot: datetime, by: str) -> bool:
        """Record that `by` runs this slot; False if another process already has."""
        ...

    def has_runs(self, kind: str) -> bool: ...

    def running(self, kind: str) -> AbstractContextManager[bool]:
        """Hold the advisory lock for `kind` while running; yields False if another holds it."""
        ...


def parse(expression: str, setting: str) -> str:
    try:
        CronSim(expression, datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as exc:
        raise ConfigError(f"{setting}: not a cron expression ({exc})") from None
    return expression


def next_run(expression: str, after: datetime) -> datetime:
    """The first slot of `expression` after `after` (UTC)."""
    return next(iter(CronSim(expression, after.astimezone(UTC))))


class Schedule:
    def __init__(
        self,
        kind: str,
        expression: str,
        run: Callable[[], None],
        ledger: Ledger,
        identity: str,
        now: datetime,
        on_missed: Callable[[str, datetime, str], None] = lambda kind, slot, cause: None,
    ) -> None:
        self.kind = kind
        self._on_missed = on_missed  # a slot the ledger could not be asked for: told once
        self._missed: datetime | None = None  # …and run once the ledger answers again
        self._expression = expression
        self._run = run
        self._ledger = ledger
        self._identity = identity
        self._next = self.next_after(now)
        self._catch_up = True

    def next_after(self, moment: datetime) -> datetime:
        return next(iter(CronSim(self._expression, moment.astimezone(UTC))))

    def latest_at_or_before(self, moment: datetime) -> datetime:
        # CronSim looks forward only: step from a day (or a year) back to the last slot <= moment.
        for back in (timedelta(days=1), timedelta(days=400)):
            latest = None
            for slot in CronSim(self._expression, moment - back):
                if slot > moment:
                    break
                latest = slot
            if latest is not None:
                return latest
        return moment

    def tick(self, now: datetime) -> datetime | None:
        """Run what is due at `now`; the slot run, or None."""
        slot: datetime | None = None
        if self._catch_up:
            missed = self.latest_at_or_before(now)
            try:
                if missed < now and self._ledger.has_runs(self.kind):
                    slot = missed  # it ran before: one catch-up for the newest missed slot
                self._catch_up = False
            except PgkeepError as exc:  # the ledger does not answer: asked again next tick
                logger.warning("schedule %s: catch-up not decided: %s", self.kind, exc.message)
        if slot is None and now >= self._next:
            slot = self.latest_at_or_before(now)
        if slot is None:
            slot = self._missed  # the ledger did not answer then: its one catch-up
        if slot is None:
            return None
        self._next = self.next_after(now)
        try:
            claimed = self._ledger.claim(self.kind, slot, self._identity)
        except PgkeepError as exc:
            if self._missed != slot:
                self._on_missed(self.kind, slot, f"{exc.message} {exc.details}".strip())
            self._missed = slot
            raise
        self._missed = None
        if not claimed:
            logger.info("scheduled %s for %s already taken by another process", self.kind, slot)
            return None
        with self._ledger.running(self.kind) as acquired:
            if not acquired:
                logger.warning(
                    "scheduled %s for %s skipped: another run holds the lock", self.kind, slot
                )
                return None
            logger.info("scheduled %s started for slot %s", self.kind, slot.isoformat())
            try:
                self._run()
            except PgkeepError as exc:
                logger.error("scheduled %s for %s failed: %s", self.kind, slot, exc.message)
        return slot


class Scheduler:
    """Ticks schedules and periodic checks on one thread; `alive` for readiness."""

    def __init__(
        self,
        schedules: list[Schedule],
        checks: list[Callable[[datetime], None]],
        clock: Callable[[], datetime],
        interval: float = 15.0,
    ) -> None:
        self.schedules = schedules
        self._checks = checks
        self._clock = clock
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="pgkeep-scheduler")
        self.heartbeat: datetime | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self, wait: bool = True) -> None:
        """No more ticks; `wait` for a tick in progress to end."""
        self._stop.set()
        if wait and self._thread.is_alive():
            self._thread.join(timeout=10)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def tick(self) -> None:
        now = self._clock()
        self.heartbeat = now
        for schedule in self.schedules:
            try:
                schedule.tick(now)
            except PgkeepError as exc:
                logger.error("schedule %s: %s %s", schedule.kind, exc.message, exc.details)
        for check in self._checks:
            try:
                check(now)
            except PgkeepError as exc:
                logger.error("periodic check failed: %s", exc.message)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.tick()
            self._stop.wait(self._interval)
