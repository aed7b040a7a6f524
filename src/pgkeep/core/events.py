"""What happened and who did it, for whoever listens: the audit log, metrics and alerts.

Every action a use case performs (or refuses) is one `Event` carrying its
`Actor`, whatever the entry point: the API, the CLI, the scheduler or retention.

The audit trail is a recorder, not a listener: `action` writes a `started` entry to
it before the work, and an action whose entry cannot be written is refused
(`Unavailable`), never done unrecorded. With the disk full, 14 of 20 downloads had
been served with no entry at all. The outcome that follows is written as well as it
can be: the work is done by then, and its `started` entry already records it.
Listeners (metrics, alerts, copies) never fail the work; one that raises is logged.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from pgkeep.errors import (
    AuthError,
    Cancelled,
    Conflict,
    InvalidInput,
    NotFound,
    PgkeepError,
    Unavailable,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Actor:
    """Who asked: a token's subject over the API, an API key (its name; `key_id`, and the
    OWNER it acts for), an OS user on the CLI, or pgkeep itself."""

    who: str
    via: str  # "api", "key", "cli", "scheduler", "retention", "system"
    source: str = ""  # client address, for the API
    request_id: str = ""
    key_id: str = ""
    owner: str = ""


# Anything shaped as an API key's secret (`pgk_<id>_<secret>`), wherever a caller put it (a
# backup name in a path, a query): no log line or audit entry ever carries it.
_KEY_SHAPED = re.compile(r"pgk_[A-Za-z0-9_-]*")


def scrub_keys(text: str) -> str:
    """`text` with every API-key-shaped word replaced."""
    return _KEY_SHAPED.sub("pgk_[REDACTED]", text) if "pgk_" in text else text


SYSTEM = Actor("pgkeep", "system")
SCHEDULER = Actor("scheduler", "scheduler")
RETENTION = Actor("retention", "retention")


@dataclass(frozen=True)
class Event:
    action: str  # create, delete, download, verify, restore, pin, unpin, import, ...
    outcome: str  # started (for the trail only), succeeded, failed, refused, cancelled
    target: str
    at: datetime
    actor: Actor
    filename: str | None = None
    size_bytes: int | None = None
    error: str = ""
    store: str = ""  # for copies: the store copied to
    drift: str = ""  # a create that drifted: why (core/drift.py)
    environment: str = ""  # an inconclusive verify: what the verify server lacked
    rehearsal: str = ""  # a verify's rehearsals that failed (core/rehearsing.py)

    def __post_init__(self) -> None:
        if self.filename and "pgk_" in self.filename:
            object.__setattr__(self, "filename", scrub_keys(self.filename))
        if "pgk_" in self.error:
            object.__setattr__(self, "error", scrub_keys(self.error))


Listener = Callable[[Event], None]
_REFUSALS = (InvalidInput, NotFound, Conflict, AuthError)


class Events:
    """The recorders and listeners of one service; subscribed once, at wiring time."""

    def __init__(self, clock: Callable[[], datetime]) -> None:
        self._recorders: list[Listener] = []
        self._listeners: list[Listener] = []
        self._clock = clock

    def record_in(self, recorder: Listener) -> None:
        """The audit trail: every action is written to it before it is done."""
        self._recorders.append(recorder)

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def emit(self, event: Event) -> None:
        """Tell the recorders and the listeners what happened; none of them fails the work."""
        for listener in (*self._recorders, *self._listeners):
            try:
                listener(event)
            except PgkeepError as exc:
                logger.error("%s %s not recorded: %s", event.action, event.outcome, exc.message)
            except Exception:
                logger.exception("event listener failed for %s %s", event.action, event.outcome)

    def now(self) -> datetime:
        return self._clock()

    @contextmanager
    def action(
        self, action: str, target: str, actor: Actor, filename: str | None = None
    ) -> Iterator[ActionRecord]:
        """Record that the block starts, then run it (not at all when that record cannot be
        written), then emit how it ended: succeeded, or how it failed (refused, cancelled…)."""
        record = ActionRecord(filename)
        try:
            self._record_ahead(Event(action, "started", target, self._clock(), actor, filename))
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
                drift=record.drift,
                environment=record.environment,
                rehearsal=record.rehearsal,
            )
        )

    def _record_ahead(self, event: Event) -> None:
        """Write `event` to every recorder, or refuse the action: Unavailable, naming why."""
        for recorder in self._recorders:
            try:
                recorder(event)
            except PgkeepError as exc:
                raise Unavailable(exc.message, _refused(event, exc.details)) from exc
            except Exception as exc:
                logger.exception("audit trail failed for %s", event.action)
                raise Unavailable(
                    "cannot write the audit trail", _refused(event, "see the server log")
                ) from exc


def _refused(event: Event, cause: str) -> str:
    refused = f"{event.action} refused: pgkeep does nothing it cannot record"
    return f"{cause}; {refused}" if cause else refused


@dataclass
class ActionRecord:
    """Filled in by the work: its backup's name and size, or why it failed without raising
    (a verify that ran and found the backup bad)."""

    filename: str | None = None
    size_bytes: int | None = None
    error: str = ""
    drift: str = ""
    environment: str = ""
    rehearsal: str = ""


def outcome_of(exc: PgkeepError) -> str:
    if isinstance(exc, Cancelled):
        return "cancelled"
    return "refused" if isinstance(exc, _REFUSALS) else "failed"
