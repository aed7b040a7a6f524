"""A target's health, as the overview shows it: its status, its last failure with the cause,
its last test restore and its size trend, derived only from what is recorded (the backups'
manifests, the job records, the missed-slot records), so a restart changes none of it.

A target's status is the first that applies: `gone` (its database was dropped), `failing`
(its last create failed, or a scheduled slot could not run, and no backup succeeded
since), `unreachable` (its database does not answer), `stale` (no good backup within
`stale_after`, as the stale alert counts it), `ok`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

from pgkeep.core.jobs import Job, JobKind, JobStatus
from pgkeep.core.models import Backup, Verification

TREND_LENGTH = 30
# libpq and the server's message, as a connection error or a tool's stderr carries it.
_SERVER_SAID = re.compile(r"(?:ERROR|FATAL|PANIC):  (.+)")


class Status(StrEnum):
    GONE = "gone"
    FAILING = "failing"
    UNREACHABLE = "unreachable"
    STALE = "stale"
    OK = "ok"


@dataclass(frozen=True)
class Missed:
    """A scheduled slot that could not run (its ledger did not answer, or its job could not
    start), and why."""

    kind: str  # the schedule's: "backup" or "verify"
    slot: datetime
    cause: str


class MissedSlots(Protocol):
    """Where missed slots are recorded: with the jobs (pgkeep's state file or the control
    database), so a target stays failing across restarts."""

    def miss(self, target: str, missed: Missed) -> None:
        """Record a missed slot (only the newest of each target and kind is kept)."""
        ...

    def missed(self) -> dict[str, list[Missed]]:
        """Every target's recorded missed slots."""
        ...


@dataclass(frozen=True)
class Failure:
    at: datetime
    kind: str  # create, verify, restore, missed, or store (its backups cannot be read)
    cause: str
    job_id: str | None = None


@dataclass(frozen=True)
class Facts:
    """What is known of one target; `backups` are its primary store's, newest first, and
    `jobs` its own, any order."""

    backups: list[Backup]
    jobs: list[Job]
    missed: list[Missed]
    gone: bool
    reachable: bool
    stale_after: timedelta | None
    first_seen: datetime | None
    now: datetime
    store_error: str | None = None  # the primary store cannot be read now: why


def last_good(backups: Iterable[Backup]) -> datetime | None:
    """When the newest signed backup finished (what the stale alert counts from)."""
    newest = next((b for b in backups if b.signed), None)
    if newest is None:
        return None
    return newest.manifest.finished_at if newest.manifest else newest.created_at


def status(facts: Facts) -> Status:
    if facts.gone:
        return Status.GONE
    if failing(facts):
        return Status.FAILING
    if not facts.reachable:
        return Status.UNREACHABLE
    if stale(facts):
        return Status.STALE
    return Status.OK


def failing(facts: Facts) -> bool:
    """The last create failed, or a backup slot was missed, with no good backup since; or
    the primary store cannot be read (no backup can be made or listed there)."""
    if facts.store_error is not None:
        return True
    good = last_good(facts.backups)
    creates = [j for j in facts.jobs if j.kind is JobKind.CREATE and j.status.finished]
    last = max(creates, key=_ended, default=None)
    if last is not None and last.status is JobStatus.FAILED and _after(_ended(last), good):
        return True
    return any(m.kind == "backup" and _after(m.slot, good) for m in facts.missed)


def stale(facts: Facts) -> bool:
    """No good backup within `stale_after`; a target with none only once it has existed
    (been seen) that long."""
    if facts.stale_after is None:
        return False
    good = last_good(facts.backups)
    since = good if good is not None else facts.first_seen
    return since is not None and facts.now - since > facts.stale_after


def last_failure(facts: Facts) -> Failure | None:
    """The newest failed job of the target, or missed slot, whichever came last."""
    failures = [
        Failure(_ended(j), str(j.kind), cause(j.error or "", j.details), j.id)
        for j in facts.jobs
        if j.status is JobStatus.FAILED
    ]
    failures += [
        Failure(m.slot, "missed", f"{cause(m.cause, m.cause)} (scheduled {m.kind} not run)")
        for m in facts.missed
    ]
    if facts.store_error is not None:
        failures.append(Failure(facts.now, "store", facts.store_error))
    return max(failures, key=lambda f: f.at, default=None)


def cause(error: str, details: str) -> str:
    """The server's own message first: when the error only says what failed ("cannot
    connect to …") and its details hold what the server said (`FATAL:  database "x" does
    not exist`), the server's words lead, whole, then the error."""
    said = _SERVER_SAID.search(details)
    if said is None:
        return error
    first = said.group(1).strip()
    if error.startswith(first):
        return error
    return f"{first} ({error})" if error else first


def last_test_restore(backups: Iterable[Backup]) -> tuple[Backup, Verification] | None:
    """The newest verification that included a test restore, and its backup."""
    found = [
        (b, b.manifest.verification)
        for b in backups
        if b.manifest and b.manifest.verification and _restored(b.manifest.verification)
    ]
    return max(found, key=lambda f: f[1].verified_at, default=None)


def trend(backups: Iterable[Backup]) -> list[Backup]:
    """Up to the newest 30 signed backups, oldest first."""
    signed = sorted((b for b in backups if b.signed), key=lambda b: b.created_at)
    return signed[-TREND_LENGTH:]


def duration_ms(backup: Backup) -> int | None:
    """How long its dump took, as its manifest records (started_at to finished_at)."""
    m = backup.manifest
    if m is None:
        return None
    return round((m.finished_at - m.started_at).total_seconds() * 1000)


def _restored(verification: Verification) -> bool:
    return any(c.name == "restore" for c in verification.checks)


def _ended(job: Job) -> datetime:
    return job.finished_at or job.started_at


def _after(moment: datetime, good: datetime | None) -> bool:
    return good is None or moment > good
