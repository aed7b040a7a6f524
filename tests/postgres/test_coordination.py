"""Leases in the control database itself (a real PostgreSQL): a heartbeat renews only this
instance's unfinished jobs, never another instance's and never one already reaped."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from pgkeep.core.jobs import Job, JobKind, JobStatus, Pool
from pgkeep.postgres.connection import Connection
from pgkeep.postgres.control.board import PgJobBoard
from pgkeep.postgres.control.database import ControlDatabase
from pgkeep.throwaway.cluster import ThrowawayCluster

POOL = Pool("dumps", 4)


@pytest.fixture
def control(cluster: ThrowawayCluster) -> Iterator[str]:
    name = "control_" + secrets.token_hex(4)
    url = cluster.create_database(name)
    yield url
    cluster.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _instance(url: str, name: str, lease: float = 30.0) -> PgJobBoard:
    return PgJobBoard(ControlDatabase(Connection.from_url(url)), lease_seconds=lease, instance=name)


def _job(target: str) -> Job:
    return Job(
        secrets.token_hex(8),
        JobKind.CREATE,
        JobStatus.QUEUED,
        None,
        datetime.now(UTC),
        target=target,
    )


def _row(url: str, job: Job) -> dict[str, Any]:
    with psycopg.connect(url, autocommit=True) as conn:
        found = conn.execute(
            "SELECT status, owner, lease_until, error FROM pgkeep.jobs WHERE id = %s", (job.id,)
        ).fetchone()
    assert found is not None
    return dict(zip(("status", "owner", "lease_until", "error"), found, strict=True))


def test_a_heartbeat_renews_only_this_instances_unfinished_jobs(control: str) -> None:
    here, other = _instance(control, "here"), _instance(control, "other")
    mine, theirs = _job("a"), _job("b")
    assert here.begin(mine, POOL, None)
    assert other.begin(theirs, POOL, None)
    mine_before, theirs_before = _row(control, mine), _row(control, theirs)
    time.sleep(0.05)
    assert here.heartbeat([mine, theirs]) == {mine.id: False}
    assert _row(control, mine)["lease_until"] > mine_before["lease_until"]
    assert _row(control, theirs) == theirs_before  # another instance's: untouched
    other.request_cancel(theirs.id)
    assert other.heartbeat([theirs]) == {theirs.id: True}
    here.close()
    other.close()


def test_a_heartbeat_never_revives_a_job_another_instance_reaped(control: str) -> None:
    here, other = _instance(control, "here", lease=0.2), _instance(control, "other")
    job = _job("a")
    assert here.begin(job, POOL, None)
    time.sleep(0.4)  # the lease lapses: this instance was paused, or cut off
    [reaped] = other.reap()
    assert (reaped.id, reaped.status, reaped.error) == (
        job.id,
        JobStatus.FAILED,
        "instance here stopped",
    )
    lapsed = _row(control, job)["lease_until"]
    assert here.heartbeat([job]) == {}  # lost: Leases stops it
    row = _row(control, job)
    assert (row["status"], row["lease_until"]) == ("failed", lapsed)
    here.close()
    other.close()
