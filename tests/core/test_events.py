"""Events: an action is recorded before it is done, and not done when it cannot be recorded."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from pgkeep.core.events import Actor, Event, Events
from pgkeep.errors import NotFound, StorageError, Unavailable

AT = datetime(2024, 1, 1, tzinfo=UTC)
ACTOR = Actor("alice", "api")


class Trail:
    """A recorder that keeps what it is given, and fails while `full` is set."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, str]] = []
        self.full = False

    def __call__(self, event: Event) -> None:
        if self.full:
            raise StorageError("cannot write the audit trail: No space left on device", "x.jsonl")
        self.entries.append((event.action, event.outcome))


def _events() -> tuple[Events, Trail, list[tuple[str, str]]]:
    events = Events(lambda: AT)
    trail, heard = Trail(), []
    events.record_in(trail)
    events.subscribe(lambda event: heard.append((event.action, event.outcome)))
    return events, trail, heard


def test_action_is_recorded_as_started_before_its_work() -> None:
    events, trail, heard = _events()
    with events.action("delete", "shop", ACTOR, "b.sql"):
        assert trail.entries == [("delete", "started")]
    assert trail.entries == [("delete", "started"), ("delete", "succeeded")]
    assert heard == [("delete", "succeeded")]  # listeners hear how it ended, once


def test_action_that_cannot_be_recorded_is_refused_undone() -> None:
    events, trail, heard = _events()
    trail.full = True
    done = []
    with pytest.raises(Unavailable) as refused, events.action("download", "shop", ACTOR, "b.sql"):
        done.append(True)
    assert done == []
    assert refused.value.message == "cannot write the audit trail: No space left on device"
    assert "download refused" in refused.value.details
    assert heard == [("download", "failed")]  # alerts and metrics still hear of it


def test_outcome_that_cannot_be_recorded_is_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The work is done by then, and its started entry records it."""
    events, trail, _ = _events()
    with caplog.at_level(logging.ERROR), events.action("pin", "shop", ACTOR, "b.sql"):
        trail.full = True
    assert trail.entries == [("pin", "started")]
    assert "pin succeeded not recorded: cannot write the audit trail" in caplog.text


def test_refusals_are_recorded_after_their_start() -> None:
    events, trail, _ = _events()
    with pytest.raises(NotFound), events.action("delete", "shop", ACTOR, "b.sql"):
        raise NotFound("backup 'b.sql' not found")
    assert trail.entries == [("delete", "started"), ("delete", "refused")]
