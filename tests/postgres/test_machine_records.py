"""Idempotency-Key records and failed key attempts in both homes (the state file, the
control database): one record per caller and key for 24 hours, a job assigned only over
the one expected before it, failures counted per address and per key id in a window."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pgkeep.core.credentials import Attempts
from pgkeep.core.idempotency import KEEP_FOR, Claims
from pgkeep.local.apikeys import LocalAttempts
from pgkeep.local.idempotency import LocalClaims
from pgkeep.local.state import StateFile
from pgkeep.postgres.connection import Connection
from pgkeep.postgres.control.apikeys import PgAttempts
from pgkeep.postgres.control.database import ControlDatabase
from pgkeep.postgres.control.idempotency import PgClaims

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["state file", "control database"])
def homes(
    request: pytest.FixtureRequest, tmp_path: Path, database: str
) -> Iterator[tuple[Claims, Attempts]]:
    if request.param == "state file":
        state = StateFile(tmp_path / "state")
        yield LocalClaims(state), LocalAttempts(state)
        return
    control = ControlDatabase(Connection.from_url(database))
    yield PgClaims(control), PgAttempts(control)
    control.close()


def test_a_key_names_one_request_per_caller_for_24_hours(homes: tuple[Claims, Attempts]) -> None:
    claims, _ = homes
    first = claims.claim("key:a", "k", "fp1", NOW)
    again = claims.claim("key:a", "k", "fp2", NOW + timedelta(hours=1))
    other_caller = claims.claim("key:b", "k", "fp2", NOW)
    assert (first.mine, first.job_id) == (True, None)
    assert (again.mine, again.fingerprint) == (False, "fp1")
    assert other_caller.mine
    assert claims.assign("key:a", "k", "job-1", None)
    assert not claims.assign("key:a", "k", "job-2", None)  # only over the expected one
    assert claims.claim("key:a", "k", "fp1", NOW).job_id == "job-1"
    claims.release("key:a", "k")  # a record with a job is kept
    assert claims.claim("key:a", "k", "fp1", NOW).job_id == "job-1"
    assert claims.assign("key:a", "k", None, "job-1")  # a failed job: the retry takes it
    claims.release("key:a", "k")
    assert claims.claim("key:a", "k", "fp3", NOW).mine  # released: the key is free
    later = claims.claim("key:a", "k", "fp4", NOW + KEEP_FOR + timedelta(seconds=1))
    assert (later.mine, later.fingerprint) == (True, "fp4")


def test_failed_attempts_are_counted_per_address_and_key_within_the_window(
    homes: tuple[Claims, Attempts],
) -> None:
    _, attempts = homes
    for n in range(3):
        attempts.fail("10.0.0.1", "aaaa", NOW + timedelta(seconds=n))
    attempts.fail("10.0.0.2", "aaaa", NOW)
    attempts.fail("10.0.0.1", "bbbb", NOW)
    assert attempts.counts("10.0.0.1", "aaaa", NOW) == (4, 4, 3)
    assert attempts.counts("10.0.0.3", "aaaa", NOW) == (0, 4, 0)
    assert attempts.counts("10.0.0.1", "aaaa", NOW + timedelta(seconds=2)) == (1, 1, 1)
    attempts.fail("10.0.0.9", "cccc", NOW + timedelta(hours=2))  # forgets the old ones
    assert attempts.counts("10.0.0.1", "aaaa", NOW - timedelta(days=1)) == (0, 0, 0)
