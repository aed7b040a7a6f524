"""Retention: which backups the policy deletes, and why. Pure: backups, policy, pins and now in.

A backup is kept when any rule keeps it:
- *within*: it is at most `max_age_days` old (the spec's 30-day rule; 0 turns it off);
- *last N*: it is among the newest `keep_last`;
- *daily/weekly/monthly/yearly N*: it is the newest backup of one of the newest N
  days (ISO weeks, months, years) that have backups;
- *floor*: it is among the newest `min_keep` good backups (signed by this service,
  and not failed verification), so cleanup never leaves fewer than that;
- *pinned*: someone pinned it.
Everything else is deleted. With no rule at all (age 0 and every count 0) retention
is off and nothing is deleted: "0" never means "keep nothing". Age is measured from
each backup's creation time (the dump's start, encoded in its name), not from the
file's mtime.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from pgkeep.core import naming
from pgkeep.core.models import Backup


@dataclass(frozen=True)
class RetentionPolicy:
    max_age_days: int = 30
    keep_last: int = 0
    keep_daily: int = 0
    keep_weekly: int = 0
    keep_monthly: int = 0
    keep_yearly: int = 0
    min_keep: int = 1


@dataclass(frozen=True)
class Decision:
    backup: Backup
    keep: bool
    reasons: tuple[str, ...]


def plan(
    backups: Sequence[Backup], policy: RetentionPolicy, now: datetime, pinned: Iterable[str] = ()
) -> list[Decision]:
    """A decision for every backup, newest first."""
    # Newest first by start time, then suffix (`…45-2.sql` after `…45.sql`), as names sort.
    ordered = sorted(backups, key=lambda b: naming.sort_key(b.name), reverse=True)
    if not _any_rule(policy):
        return [Decision(b, True, ("retention is off",)) for b in ordered]
    reasons: dict[str, list[str]] = {b.name: [] for b in ordered}
    pins = set(pinned)
    for b in ordered:
        if b.name in pins:
            reasons[b.name].append("pinned")
        if policy.max_age_days > 0 and now - b.created_at <= timedelta(days=policy.max_age_days):
            reasons[b.name].append(f"within {policy.max_age_days} days")
    for b in ordered[: policy.keep_last]:
        reasons[b.name].append(f"among the last {policy.keep_last}")
    for label, count, bucket in _CALENDAR:
        for b in _newest_per_bucket(ordered, getattr(policy, count), bucket):
            reasons[b.name].append(label)
    good = [b for b in ordered if _good(b)]
    for b in good[: policy.min_keep]:
        reasons[b.name].append(f"among the newest {policy.min_keep} good (floor)")
    return [
        Decision(b, bool(reasons[b.name]), tuple(reasons[b.name]) or (_why_delete(policy),))
        for b in ordered
    ]


def expired(
    backups: Sequence[Backup], policy: RetentionPolicy, now: datetime, pinned: Iterable[str] = ()
) -> list[Backup]:
    """The backups the policy deletes now."""
    return [d.backup for d in plan(backups, policy, now, pinned) if not d.keep]


_CALENDAR: list[tuple[str, str, Callable[[datetime], tuple[int, ...]]]] = [
    ("daily", "keep_daily", lambda t: (t.year, t.month, t.day)),
    ("weekly", "keep_weekly", lambda t: tuple(t.isocalendar())[:2]),
    ("monthly", "keep_monthly", lambda t: (t.year, t.month)),
    ("yearly", "keep_yearly", lambda t: (t.year,)),
]


def _newest_per_bucket(
    ordered: Sequence[Backup], count: int, bucket: Callable[[datetime], tuple[int, ...]]
) -> list[Backup]:
    kept: list[Backup] = []
    seen: set[tuple[int, ...]] = set()
    for b in ordered:
        if len(seen) >= count:
            break
        key = bucket(b.created_at)
        if key not in seen:
            seen.add(key)
            kept.append(b)
    return kept


def _any_rule(p: RetentionPolicy) -> bool:
    counts = (p.keep_last, p.keep_daily, p.keep_weekly, p.keep_monthly, p.keep_yearly)
    return p.max_age_days > 0 or any(n > 0 for n in counts)


def _good(backup: Backup) -> bool:
    m = backup.manifest
    # An inconclusive verify (verified None: the verify server lacked something) is no failure.
    return (
        backup.signed
        and m is not None
        and (m.verification is None or m.verification.verified is not False)
    )


def _why_delete(policy: RetentionPolicy) -> str:
    if policy.max_age_days > 0:
        return f"older than {policy.max_age_days} days and kept by no other rule"
    return "kept by no rule"
