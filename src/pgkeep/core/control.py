"""What running work reports to and is cancelled through: a job's `Control` and its `Progress`.

Adapters register a callback (kill pg_dump) so that a cancel lands even while a
tool is blocked. Percent and ETA are given only against a known estimate, and
never reach 100 before the work says it is done.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from pgkeep.errors import Cancelled


@dataclass(frozen=True)
class Progress:
    bytes_written: int = 0
    tables_done: int = 0
    tables_total: int | None = None
    percent: float | None = None
    eta_seconds: float | None = None


class Control:
    """Handed to running work: report progress, learn of and react to cancellation."""

    def __init__(self, on_change: Callable[[], None] = lambda: None, job_id: str = "") -> None:
        self.job_id = job_id  # names what the work leaves behind (scratch databases, roles)
        self.cancelled = threading.Event()
        self._callbacks: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._on_change = on_change
        self.progress = Progress()
        self.filename: str | None = None
        self._started = time.monotonic()
        self.expected_bytes: int | None = None
        self.expired = False
        self.reason = "cancelled"  # why, when not on request: a lost lease, a shutdown
        self.failed = False  # stopped by a fault (a lost lease), not a choice: the job fails

    def on_cancel(self, callback: Callable[[], None]) -> None:
        with self._lock:
            self._callbacks.append(callback)
            run_now = self.cancelled.is_set()
        if run_now:
            callback()

    def cancel(self, reason: str = "") -> None:
        if reason and not self.cancelled.is_set():
            self.reason = reason
        self.cancelled.set()
        with self._lock:
            callbacks = list(self._callbacks)
        for callback in callbacks:
            callback()

    def fail(self, reason: str) -> None:
        """Stop the work because of a fault, not a request: its job fails with `reason`."""
        self.failed = True
        self.cancel(reason)

    def expire(self) -> None:
        """Stop the work because it ran out of time: a fault, so its job fails (`expired`
        lets the work say so in its own words)."""
        self.expired = True
        self.fail("stopped: it ran longer than its timeout")

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
