"""What happened and who did it, for whoever listens: the audit log, metrics and alerts.

Every action a use case performs (or refuses) is one `Event` carrying its
`Actor`, whatever the entry point: the API, the CLI, the scheduler or retention.
Listeners never fail the work; one that raises is logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from pgkeep.errors import AuthError, Cancelled, Conflict, InvalidInput, NotFound, PgkeepError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Actor:
    """Who asked: a token's subject over the API, an OS user on the CLI, or pgkeep itself."""

    who: str
    via: str  # "api", "cli", "scheduler", "retention", "system"
    source: str = ""  # client address, for the API
    request_id: str = ""


SYSTEM = Actor("pgkeep", "system")
SCHEDULER = Actor("scheduler", "scheduler")
RETENTION = Actor("retention", "retention")


@dataclass(frozen=True)
class Event:
    action: str  # create, delete, download, verify, restore, pin, unpin, import, ...
    outcome: str  # succeeded, failed, refused, cancelled
    target: str
    at: datetime
    actor: Actor
    filename: str | None = None
    size_bytes: int | None = None
    error: str = ""
    store: str = ""  # for copies: the store copied to


Listener = Callable[[Event], None]
_REFUSALS = (InvalidInput, NotFound, Conflict, AuthError)


class Events:
    """The listeners of one service; subscribed once, at wiring time."""

    def __init__(self, clock: Callable[[], datetime]) -> None:
        self._listeners: list[Listener] = []
        self._clock = clock

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def emit(self, event: Event) -> None:
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:
                logger.exception("event listener failed for %s %s", event.action, event.outcome)

    def now(self) -> datetime:
        return self._clock()

    @contextmanager
    def action(
        self, action: str, target: str, actor: Actor, filename: str | None = None
    ) -> Iterator[ActionRecord]:
        """Emit one event for the block: succeeded, or how it failed (refused, cancelled…)."""
        record = ActionRecord(filename)
        try:
            yield record
        except PgkeepError as exc:
            outcome = outcome_of(exc)
            error = f"{exc.message} {exc.details}".strip()
            self.emit(
                Event(action, outcome, target, self._clock(), actor, record.filename, None, error)
            )
            raise
        except BaseException:
            self.emit(
                Event(
                    action,
                    "failed",
                    target,
                    self._clock(),
                    actor,
                    record.filename,
                    error="internal error",
                )
            )
            raise
        outcome = "failed" if record.error else "succeeded"
        self.emit(
            Event(
                action,
                outcome,
                target,
                self._clock(),
                actor,
                record.filename,
                record.size_bytes,
                record.error,
            )
        )


@dataclass
class ActionRecord:
    """Filled in by the work: its backup's name and size, or why it failed without raising
    (a verify that ran and found the backup bad)."""

    filename: str | None = None
    size_bytes: int | None = None
    error: str = ""


def outcome_of(exc: PgkeepError) -> str:
    if isinstance(exc, Cancelled):
        return "cancelled"
    return "refused" if isinstance(exc, _REFUSALS) else "failed"
