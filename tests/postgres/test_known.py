"""What is kept where jobs are (the databases servers were found to hold, alert episodes):
the control database for instances, pgkeep's state file alone, both the same contract."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pgkeep.core.health import Missed, MissedSlots
from pgkeep.core.ports import Episodes, KnownTargets
from pgkeep.local.episodes import LocalEpisodes
from pgkeep.local.known import LocalKnownTargets
from pgkeep.local.state import StateFile
from pgkeep.postgres.connection import Connection
from pgkeep.postgres.control.database import ControlDatabase
from pgkeep.postgres.control.episodes import PgEpisodes
from pgkeep.postgres.control.known import PgKnownTargets
from pgkeep.throwaway.cluster import ThrowawayCluster


@pytest.fixture(params=["state file", "control database"])
def known(
    request: pytest.FixtureRequest, tmp_path: Path, cluster: ThrowawayCluster, database: str
) -> Iterator[KnownTargets]:
    if request.param == "state file":
        yield LocalKnownTargets(StateFile(tmp_path / "state"))
        return
    control = ControlDatabase(Connection.from_url(database))
    yield PgKnownTargets(control)
    control.close()


def test_found_databases_are_remembered_per_server_until_forgotten(known: KnownTargets) -> None:
    known.remember("main", ["a", "b"])
    known.remember("main", ["b", "c"])  # seen again: once
    known.remember("other", ["a"])
    assert known.known("main") == ["a", "b", "c"]
    known.forget("main", "b")
    assert known.known("main") == ["a", "c"]
    assert known.known("other") == ["a"]
    assert known.known("none") == []


@pytest.fixture(params=["state file", "control database"])
def episodes(request: pytest.FixtureRequest, tmp_path: Path, database: str) -> Iterator[Episodes]:
    if request.param == "state file":
        yield LocalEpisodes(StateFile(tmp_path / "state"))
        return
    control = ControlDatabase(Connection.from_url(database))
    yield PgEpisodes(control)
    control.close()


def test_alert_episodes_open_once_until_closed_and_first_sightings_stay(
    episodes: Episodes,
) -> None:
    now = datetime(2025, 1, 2, tzinfo=UTC)
    assert episodes.first_seen("t", now) == now
    assert episodes.first_seen("t", now + timedelta(days=1)) == now  # the first, kept
    assert episodes.open("backup.stale", "t", now) is True
    assert episodes.open("backup.stale", "t", now) is False
    assert episodes.open("backup.stale", "u", now) is True
    episodes.close("backup.stale", "t")
    assert episodes.open("backup.stale", "t", now) is True


@pytest.fixture(params=["state file", "control database"])
def missed_slots(
    request: pytest.FixtureRequest, tmp_path: Path, database: str
) -> Iterator[MissedSlots]:
    if request.param == "state file":
        yield LocalEpisodes(StateFile(tmp_path / "state"))
        return
    control = ControlDatabase(Connection.from_url(database))
    yield PgEpisodes(control)
    control.close()


def test_missed_slots_keep_the_newest_per_target_and_kind(missed_slots: MissedSlots) -> None:
    first = Missed("backup", datetime(2025, 1, 2, 4, tzinfo=UTC), "the ledger: down")
    newer = Missed("backup", datetime(2025, 1, 3, 4, tzinfo=UTC), "not started: busy")
    verify = Missed("verify", datetime(2025, 1, 3, 5, tzinfo=UTC), "the ledger: down")
    assert missed_slots.missed() == {}
    missed_slots.miss("t", first)
    missed_slots.miss("t", newer)
    missed_slots.miss("t", verify)
    missed_slots.miss("u", first)
    found = missed_slots.missed()
    assert sorted(found["t"], key=lambda m: m.kind) == [newer, verify]
    assert found["u"] == [first]
