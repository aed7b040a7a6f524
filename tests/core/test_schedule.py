"""Schedules with an injected clock, coordinated through a real ledger on the test server."""

from __future__ import annotations

import secrets
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pgkeep import wiring
from pgkeep.config import load_settings
from pgkeep.core.schedule import Schedule, parse
from pgkeep.errors import ConfigError, PgkeepError
from pgkeep.postgres.connection import Connection
from pgkeep.postgres.control.ledger import PgLedger
from pgkeep.throwaway.cluster import ThrowawayCluster
from tests.conftest import SECRET

DAILY = "0 3 * * *"
T0 = datetime(2025, 6, 1, 2, 0, tzinfo=UTC)


def _ledger(cluster: ThrowawayCluster, target: str) -> PgLedger:
    return PgLedger(Connection.from_url(cluster.url("postgres")), target)


def _schedule(
    ledger: PgLedger, runs: list[str], who: str, now: datetime, work: float = 0.0
) -> Schedule:
    def run() -> None:
        runs.append(who)
        time.sleep(work)

    return Schedule("backup", DAILY, run, ledger, who, now)


def test_schedule_runs_each_slot_once_across_processes(cluster: ThrowawayCluster) -> None:
    target = "t_" + secrets.token_hex(4)
    runs: list[str] = []
    a = _schedule(_ledger(cluster, target), runs, "a", T0)
    b = _schedule(_ledger(cluster, target), runs, "b", T0)
    assert a.tick(T0) is None  # first start: nothing due, no catch-up
    assert b.tick(T0) is None
    slot = datetime(2025, 6, 1, 3, 0, tzinfo=UTC)
    assert a.tick(slot) == slot
    assert b.tick(slot + timedelta(minutes=30)) is None  # woke later: already taken
    assert runs == ["a"]
    assert a.tick(slot + timedelta(hours=1)) is None
    assert b.tick(slot + timedelta(days=1)) == slot + timedelta(days=1)
    assert runs == ["a", "b"]


def test_schedule_two_racers_for_one_slot_produce_one_run(cluster: ThrowawayCluster) -> None:
    target = "t_" + secrets.token_hex(4)
    runs: list[str] = []
    slot = datetime(2025, 6, 1, 3, 0, tzinfo=UTC)
    racers = [_schedule(_ledger(cluster, target), runs, f"r{i}", T0, work=0.3) for i in range(4)]
    barrier = threading.Barrier(len(racers))

    def race(schedule: Schedule) -> None:
        barrier.wait()
        schedule.tick(slot)

    threads = [threading.Thread(target=race, args=(s,)) for s in racers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(runs) == 1


def test_schedule_catches_up_once_after_downtime(cluster: ThrowawayCluster) -> None:
    target = "t_" + secrets.token_hex(4)
    runs: list[str] = []
    first = _schedule(_ledger(cluster, target), runs, "before", T0)
    first.tick(datetime(2025, 6, 1, 3, 0, tzinfo=UTC))
    # Down for three days and a bit: slots on the 2nd, 3rd and 4th were missed.
    back = datetime(2025, 6, 4, 9, 0, tzinfo=UTC)
    after = _schedule(_ledger(cluster, target), runs, "after", back)
    assert after.tick(back) == datetime(2025, 6, 4, 3, 0, tzinfo=UTC)
    assert after.tick(back + timedelta(minutes=1)) is None
    assert runs == ["before", "after"]
    another = _schedule(_ledger(cluster, target), runs, "third", back)
    assert another.tick(back) is None  # the catch-up slot is taken
    assert runs == ["before", "after"]


def test_schedule_skips_while_another_run_holds_the_lock(cluster: ThrowawayCluster) -> None:
    target = "t_" + secrets.token_hex(4)
    holder = _ledger(cluster, target)
    runs: list[str] = []
    late = _schedule(_ledger(cluster, target), runs, "late", T0)
    with holder.running("backup") as acquired:
        assert acquired
        assert late.tick(datetime(2025, 6, 1, 3, 0, tzinfo=UTC)) is None
    assert runs == []


def test_schedule_rejects_bad_cron_and_ledger_in_target(
    cluster: ThrowawayCluster, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="PGKEEP_SCHEDULE: not a cron expression"):
        parse("every day", "PGKEEP_SCHEDULE")
    with pytest.raises(ConfigError, match="PGKEEP_SCHEDULE: not a cron expression"):
        load_settings(schedule="61 * * * *")
    settings = load_settings(
        database_url=cluster.url("postgres"), jwt_secret=SECRET, schedule=DAILY, backup_dir=tmp_path
    )
    with pytest.raises(ConfigError, match="PGKEEP_SCHEDULE_DATABASE"):
        wiring.build(settings)


def test_a_slot_the_ledger_could_not_be_asked_for_is_told_once_then_caught_up(
    cluster: ThrowawayCluster,
) -> None:
    """Seen before: with the control database down, a scheduled backup was skipped with one
    log line (no alert, no catch-up). Now it is told once, and run once it answers."""
    control = "ledger_" + secrets.token_hex(4)  # not there yet: the control database is down
    ledger = PgLedger(Connection.from_url(cluster.url(control)), "t")
    runs: list[str] = []
    told: list[tuple[str, datetime, str]] = []
    schedule = Schedule(
        "backup", DAILY, lambda: runs.append("ran"), ledger, "a", T0, lambda *m: told.append(m)
    )
    slot = datetime(2025, 6, 1, 3, 0, tzinfo=UTC)
    assert schedule.tick(T0) is None  # first start: nothing due (and no ledger asked)
    with pytest.raises(PgkeepError):
        schedule.tick(slot)
    with pytest.raises(PgkeepError):
        schedule.tick(slot + timedelta(minutes=15))  # still down: told once, not twice
    assert [(kind, when) for kind, when, _ in told] == [("backup", slot)]
    assert control in told[0][2]
    cluster.execute(f'CREATE DATABASE "{control}"')  # it answers again
    try:
        assert schedule.tick(slot + timedelta(minutes=30)) == slot  # the missed slot, once
        assert schedule.tick(slot + timedelta(minutes=45)) is None
        assert runs == ["ran"]
    finally:
        cluster.execute(f'DROP DATABASE IF EXISTS "{control}" WITH (FORCE)')
