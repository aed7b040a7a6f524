"""A shutting-down JobRunner: takes no more jobs, hands queued ones back, lets running ones
finish within the grace period, cancels the rest and waits for their clean-up."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pgkeep.core.control import Control
from pgkeep.core.jobs import JobKind, JobStatus, Pool
from pgkeep.core.runner import JobRunner
from pgkeep.errors import Cancelled, Unavailable
from pgkeep.local.board import LocalJobBoard
from pgkeep.local.state import StateFile


@pytest.fixture
def runner(tmp_path: Path) -> JobRunner:
    board = LocalJobBoard(StateFile(tmp_path / "state"))
    return JobRunner(board, lambda: datetime.now(UTC))


def test_running_jobs_finish_or_are_cancelled_and_queued_ones_are_handed_back(
    runner: JobRunner,
) -> None:
    pool = Pool("dumps", 2)
    release = threading.Event()
    cleaned: list[str] = []

    def quick(control: Control) -> tuple[str | None, Any]:
        release.wait(10)
        return "quick.sql", None

    def endless(control: Control) -> tuple[str | None, Any]:
        control.cancelled.wait(30)
        cleaned.append("partial removed")  # what a create does before it gives up
        raise Cancelled("stopped")

    first = runner.submit(JobKind.CREATE, quick, pool=pool, target="a", exclusive=True)
    second = runner.submit(JobKind.CREATE, endless, pool=pool, target="b", exclusive=True)
    queued = runner.submit(JobKind.CREATE, quick, pool=pool, target="c", exclusive=True)
    assert queued.status is JobStatus.QUEUED

    handed = runner.close("instance x is shutting down")
    assert [j.id for j in handed] == [queued.id]
    with pytest.raises(Unavailable, match="shutting down"):
        runner.submit(JobKind.CREATE, quick, pool=pool, target="d")

    threading.Timer(0.3, release.set).start()
    started = time.monotonic()
    drained = runner.drain(time.monotonic() + 1.0, "cancelled: instance x shut down")
    assert 0.9 < time.monotonic() - started < 5  # the grace period was given, not more
    assert drained.finished == [first.id]
    assert drained.cancelled == [second.id]
    assert drained.stuck == []
    assert cleaned == ["partial removed"]  # waited for: done before drain returned

    assert runner.get(first.id).status is JobStatus.SUCCEEDED
    stopped = runner.get(second.id)
    assert stopped.status is JobStatus.CANCELLED
    assert stopped.error == "cancelled: instance x shut down"
    handed_back = runner.get(queued.id)
    assert handed_back.status is JobStatus.CANCELLED
    assert handed_back.error == "not started: instance x is shutting down"


def test_a_job_that_ignores_cancel_is_reported_stuck(runner: JobRunner) -> None:
    hold = threading.Event()

    def stubborn(control: Control) -> tuple[str | None, Any]:
        hold.wait(10)
        return None, None

    job = runner.submit(JobKind.VERIFY, stubborn, pool=Pool("proving", 1), target="a")
    runner.close("closing")
    drained = runner.drain(time.monotonic(), "cancelled", cleanup_seconds=0.5)
    assert drained.stuck == [job.id]
    hold.set()
