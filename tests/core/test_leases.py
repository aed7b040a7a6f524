"""Leases on their own, on a clock the test moves: renewed each beat, fencing at half the lease
counted from the last renewal asked for, a job another instance took over stopped as failed,
cancel requests from elsewhere, lapsed jobs reaped now and then. The instances share a job
board kept in memory with the control database's rules (postgres/control/board.py)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import pytest

from pgkeep.core.control import Control
from pgkeep.core.jobs import Job, JobKind, JobStatus, Pool
from pgkeep.core.leases import REAP_EVERY, Leases
from pgkeep.core.runner import JobRunner
from pgkeep.errors import PgkeepError, Unavailable

LEASE = 30.0
UNFINISHED = (JobStatus.QUEUED, JobStatus.RUNNING)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class _Row:
    job: Job
    owner: str
    lease_until: float
    cancel: bool = False


class Board:
    """The jobs of every instance, as the control database keeps them."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.rows: dict[str, _Row] = {}
        self.lock = threading.Lock()


class Instance:
    """One instance's view of the board (core.jobs.JobBoard)."""

    where = "memory"
    name = "the control database"
    young_seconds = LEASE

    def __init__(self, board: Board, name: str) -> None:
        self.board = board
        self.instance = name
        self.lease_seconds = LEASE
        self.cut_off = False
        self.on_heartbeat: Callable[[], None] = lambda: None
        self.heartbeats = 0

    def close(self) -> None:
        pass

    def control_id(self) -> str:
        return "memory"

    def begin(self, job: Job, pool: Pool, exclusive_key: str | None) -> bool:
        with self.board.lock:
            running = replace(job, status=JobStatus.RUNNING)
            until = self.board.clock() + self.lease_seconds
            self.board.rows[job.id] = _Row(running, self.instance, until)
        return True

    def take_slot(self, job_id: str, pool: Pool) -> bool:
        return True

    def save(self, job: Job) -> None:
        if self.cut_off:
            raise Unavailable("cannot reach the control database")
        with self.board.lock:
            row = self.board.rows.get(job.id)
            if row is not None and row.owner == self.instance:
                row.job = job

    def heartbeat(self, jobs: list[Job]) -> dict[str, bool]:
        self.heartbeats += 1
        if self.cut_off:
            raise Unavailable("cannot reach the control database")
        self.on_heartbeat()
        held = {}
        with self.board.lock:
            for job in jobs:
                row = self.board.rows.get(job.id)
                if row and row.owner == self.instance and row.job.status in UNFINISHED:
                    row.lease_until = self.board.clock() + self.lease_seconds
                    held[job.id] = row.cancel
        return held

    def get(self, job_id: str) -> Job | None:
        row = self.board.rows.get(job_id)
        return row.job if row else None

    def recent(self, limit: int) -> list[Job]:
        return [row.job for row in self.board.rows.values()][:limit]

    def request_cancel(self, job_id: str) -> Job | None:
        with self.board.lock:
            row = self.board.rows.get(job_id)
            if row is None or row.job.status not in UNFINISHED:
                return None
            row.cancel = True
            return row.job

    def reap(self) -> list[Job]:
        reaped = []
        with self.board.lock:
            for row in self.board.rows.values():
                if row.job.status in UNFINISHED and row.lease_until < self.board.clock():
                    row.job = replace(
                        row.job,
                        status=JobStatus.FAILED,
                        error=f"instance {row.owner} stopped",
                        details=f"its lease lapsed at {row.lease_until}",
                    )
                    reaped.append(row.job)
        return reaped

    def live(self) -> list[Job]:
        now = self.board.clock()
        return [
            r.job
            for r in self.board.rows.values()
            if r.job.status is JobStatus.RUNNING and r.lease_until > now
        ]

    def redeem_once(self, nonce: str, expires_at: datetime) -> bool:
        return True

    def announce(self, target: str) -> None:
        pass

    def listen(self, on_change: Callable[[str], None], stop: threading.Event) -> None:
        stop.wait()


def _until_stopped(control: Control) -> tuple[str | None, Any]:
    """A dump that runs until it is stopped (and then gives up, as a create does)."""
    control.cancelled.wait(30)
    control.check()
    return "never.sql", None


@dataclass
class World:
    clock: Clock
    board: Board
    here: Instance
    jobs: JobRunner
    leases: Leases
    reaped: list[Job]


@pytest.fixture
def world() -> World:
    clock = Clock()
    board = Board(clock)
    here = Instance(board, "a")
    jobs = JobRunner(here, lambda: datetime.now(UTC))
    reaped: list[Job] = []
    leases = Leases(jobs, here, reaped.append, clock=clock)
    return World(clock, board, here, jobs, leases, reaped)


def _start(world: World) -> Job:
    return world.jobs.submit(JobKind.CREATE, _until_stopped, pool=Pool("dumps", 2), target="t")


def _ended(world: World, job: Job) -> Job:
    return world.jobs.wait(job.id, timeout=10)


def test_each_beat_renews_the_lease_of_every_job_of_this_instance(world: World) -> None:
    job = _start(world)
    world.clock.now += 20
    world.leases.beat()
    assert world.board.rows[job.id].lease_until == world.clock.now + LEASE
    world.jobs.cancel(job.id)


def test_an_instance_cut_off_for_half_the_lease_stops_its_jobs_as_failed(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    job = _start(world)
    world.leases.beat()  # renewed at 1000
    world.here.cut_off = True
    world.clock.now += LEASE / 2 - 0.1
    world.leases.beat()
    assert world.jobs.wait(job.id, timeout=0.5).status is JobStatus.RUNNING
    world.clock.now += 0.1  # half the lease since the last renewal
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pgkeep.core.leases"):
        world.leases.beat()
    ended = _ended(world, job)
    assert ended.status is JobStatus.FAILED  # a fault, not a choice: never "cancelled"
    assert ended.error == (
        "stopped: cut off from the control database for 15 s, so that no other "
        "instance's run of it could overlap"
    )
    assert [r.getMessage() for r in caplog.records if r.name == "pgkeep.core.leases"] == [
        "cannot renew job leases for 15.0 s: cannot reach the control database",
        "cut off from the control database for 15.0 s (half the lease): stopping 1 job(s)",
    ]


def test_a_job_stopped_while_cut_off_records_its_own_ending_once_the_board_answers(
    world: World,
) -> None:
    """Its end could not be saved while cut off, and another instance reaped the lapsed
    lease as "instance a stopped": at the first beat that reaches the board, the job's own
    ending is recorded, for every instance to read."""
    job = _start(world)
    world.here.cut_off = True
    world.clock.now += LEASE / 2
    world.leases.beat()
    assert _ended(world, job).status is JobStatus.FAILED
    assert world.board.rows[job.id].job.status is JobStatus.RUNNING  # not saved
    world.clock.now += LEASE
    other = Instance(world.board, "b")
    assert [j.error for j in other.reap()] == ["instance a stopped"]
    world.here.cut_off = False
    world.leases.beat()
    recorded = other.get(job.id)
    assert recorded is not None
    assert recorded.status is JobStatus.FAILED
    assert recorded.error is not None
    assert recorded.error.startswith("stopped: cut off from the control database")
    assert world.jobs.records.waiting == 0


def test_silence_is_counted_from_when_the_renewal_was_asked_for(world: World) -> None:
    """A renewal answered late holds only from when it was asked: the other instances count
    the lease from then too."""
    job = _start(world)

    def slow() -> None:
        world.clock.now += 10

    world.here.on_heartbeat = slow
    world.leases.beat()  # asked at 1000, answered at 1010
    world.here.cut_off = True
    world.clock.now = 1000 + LEASE / 2
    world.leases.beat()
    assert _ended(world, job).status is JobStatus.FAILED


def test_silence_is_counted_from_the_start_before_any_renewal(world: World) -> None:
    job = _start(world)
    world.here.cut_off = True
    world.clock.now += LEASE / 2
    world.leases.beat()
    assert _ended(world, job).status is JobStatus.FAILED


def test_cut_off_with_nothing_running_stops_nothing(world: World) -> None:
    world.here.cut_off = True
    world.clock.now += 10 * LEASE
    world.leases.beat()
    assert world.here.heartbeats == 0  # nothing to renew, nothing asked
    job = _start(world)
    world.leases.beat()
    assert world.jobs.get(job.id).status is JobStatus.RUNNING  # the silence was idle
    world.jobs.cancel(job.id)


def test_a_job_another_instance_took_over_stops_and_fails(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    job = _start(world)
    world.clock.now += LEASE + 1  # this instance was paused past its lease
    other = Instance(world.board, "b")
    assert [j.id for j in other.reap()] == [job.id]
    with caplog.at_level(logging.ERROR, logger="pgkeep.core.leases"):
        world.leases.beat()
    ended = _ended(world, job)
    assert ended.status is JobStatus.FAILED
    assert ended.error == "stopped: its lease lapsed and another instance took over"
    assert f"jobs {[job.id]} lost their lease to another instance: stopped" in caplog.messages


def test_a_cancel_asked_on_another_instance_cancels_the_job(world: World) -> None:
    job = _start(world)
    other = Instance(world.board, "b")
    assert other.request_cancel(job.id) is not None
    world.leases.beat()
    ended = _ended(world, job)
    assert ended.status is JobStatus.CANCELLED
    assert ended.error == "cancelled"


def test_lapsed_jobs_are_reaped_on_the_first_beat_and_every_few_after(world: World) -> None:
    other = Instance(world.board, "b")
    lapsed = []
    for beat in range(1, 2 * REAP_EVERY + 2):
        job = Job(f"j{beat}", JobKind.CREATE, JobStatus.QUEUED, None, datetime.now(UTC))
        other.begin(job, Pool("dumps", 1), None)
        world.clock.now += LEASE + 1
        world.leases.beat()
        lapsed.append(len(world.reaped))
    assert lapsed == [1, 1, 1, 1, 1, 6, 6, 6, 6, 6, 11]
    assert all(j.error == "instance b stopped" for j in world.reaped)


def test_reaping_outlives_a_failure_to_look_or_to_clean_up(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    other = Instance(world.board, "b")
    for n in range(2):
        job = Job(f"j{n}", JobKind.CREATE, JobStatus.QUEUED, None, datetime.now(UTC))
        other.begin(job, Pool("dumps", 1), None)
    world.clock.now += LEASE + 1
    cleaned: list[str] = []

    def clean(job: Job) -> None:
        cleaned.append(job.id)
        if job.id == "j0":
            raise PgkeepError("the scratch server is gone")

    leases = Leases(world.jobs, world.here, clean, clock=world.clock)
    with caplog.at_level(logging.ERROR, logger="pgkeep.core.leases"):
        assert [j.id for j in leases.reap()] == ["j0", "j1"]
    assert cleaned == ["j0", "j1"]
    assert "cleaning up after job j0 failed: the scratch server is gone" in caplog.messages
    assert "job j1 (create ): instance b stopped" in caplog.messages

    def refuse() -> list[Job]:
        raise Unavailable("cannot reach the control database")

    world.here.reap = refuse  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, logger="pgkeep.core.leases"):
        assert leases.reap() == []
    assert "cannot look for lapsed leases: cannot reach the control database" in caplog.messages


def test_the_keeper_beats_on_its_own_thread_and_outlives_a_failing_beat(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    beats = threading.Semaphore(0)
    failures = iter([RuntimeError("a bug"), None, None])

    def once() -> None:
        beats.release()
        failure = next(failures, None)
        if failure is not None:
            raise failure

    leases = Leases(world.jobs, world.here, world.reaped.append, beat=0.01, clock=world.clock)
    leases.beat = once  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR, logger="pgkeep.core.leases"):
        leases.start()
        for _ in range(3):
            assert beats.acquire(timeout=10)
        leases.stop()
    assert "lease keeping failed" in caplog.messages
    assert leases._thread is not None
    assert leases._thread.name == "leases"
    assert leases._thread.daemon  # never what keeps the process alive
    assert not leases._thread.is_alive()
    Leases(world.jobs, world.here, world.reaped.append).stop()  # never started: nothing to join
