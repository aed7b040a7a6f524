"""Retention policies at their boundaries, with pins and the floor."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pgkeep.core.models import (
    Backup,
    Check,
    Compression,
    DumpFormat,
    Manifest,
    Trust,
    Verification,
)
from pgkeep.core.retention import RetentionPolicy, expired, plan

NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)  # a Saturday


def _backup(
    at: datetime, *, verified: bool | None = None, manifest: bool = True, signed: bool = True
) -> Backup:
    name = f"backup-{at:%Y-%m-%dT%H-%M-%S}.sql"
    m = None
    if manifest:
        v = None if verified is None else Verification(verified, at, (Check("sha256", verified),))
        m = Manifest(
            name,
            DumpFormat.PLAIN,
            Compression.NONE,
            0,
            1,
            "x",
            "db",
            "18",
            "18",
            at,
            at,
            "",
            None,
            v,
        )
    trust = Trust.MISSING if m is None else Trust.SIGNED if signed else Trust.UNSIGNED
    return Backup(name, 10, at, at, manifest=m, trust=trust)


def _ago(**delta: float) -> Backup:
    return _backup(NOW - timedelta(**delta))


def _names(backups: list[Backup]) -> list[str]:
    return [b.name for b in backups]


@pytest.mark.parametrize(
    ("age", "deleted"),
    [
        (timedelta(days=29), False),
        (timedelta(days=30) - timedelta(seconds=1), False),
        (timedelta(days=30), False),  # exactly 30 days is not *older* than 30 days
        (timedelta(days=30, seconds=1), True),
        (timedelta(days=31), True),
    ],
)
def test_retention_age_at_the_thirty_day_boundary(age: timedelta, deleted: bool) -> None:
    newest = _ago(hours=1)
    backup = _backup(NOW - age)
    assert (expired([newest, backup], RetentionPolicy(), NOW) == [backup]) is deleted


def test_retention_with_no_rule_at_all_is_off() -> None:
    backups = [_ago(days=d) for d in (1, 200, 3000)]
    policy = RetentionPolicy(max_age_days=0, min_keep=1)
    assert expired(backups, policy, NOW) == []
    assert {d.reasons for d in plan(backups, policy, NOW)} == {("retention is off",)}


def test_retention_zero_days_with_a_count_rule_keeps_only_what_rules_keep() -> None:
    backups = [_ago(days=d) for d in (1, 2, 3)]
    policy = RetentionPolicy(max_age_days=0, keep_last=1, min_keep=2)
    assert _names(expired(backups, policy, NOW)) == _names(backups[2:])


def test_retention_floor_keeps_newest_good_even_when_all_are_old() -> None:
    backups = [_ago(days=d) for d in (40, 50, 60, 70)]
    assert _names(expired(backups, RetentionPolicy(min_keep=2), NOW)) == _names(backups[2:])
    assert expired(backups, RetentionPolicy(min_keep=4), NOW) == []
    assert len(expired(backups, RetentionPolicy(min_keep=0), NOW)) == 4


def test_retention_floor_skips_failed_and_manifestless_backups() -> None:
    failed = _backup(NOW - timedelta(days=40), verified=False)
    bare = _backup(NOW - timedelta(days=41), manifest=False)
    good = _backup(NOW - timedelta(days=42), verified=True)
    older = _backup(NOW - timedelta(days=43))
    kept = [
        d.backup.name for d in plan([failed, bare, good, older], RetentionPolicy(), NOW) if d.keep
    ]
    assert kept == [good.name]


def test_retention_pins_are_never_deleted() -> None:
    old = _ago(days=400)
    decisions = plan([_ago(hours=1), old], RetentionPolicy(), NOW, pinned={old.name})
    assert [d.keep for d in decisions] == [True, True]
    assert decisions[1].reasons == ("pinned",)


def test_retention_keep_last_n_at_its_boundary() -> None:
    backups = [_ago(days=40 + i) for i in range(5)]
    policy = RetentionPolicy(max_age_days=0, keep_last=3, min_keep=0)
    assert _names(expired(backups, policy, NOW)) == _names(backups[3:])


def test_retention_daily_keeps_newest_of_each_day() -> None:
    day1 = [_backup(datetime(2025, 2, 28, h, tzinfo=UTC)) for h in (20, 8)]
    day2 = [_backup(datetime(2025, 2, 27, h, tzinfo=UTC)) for h in (23, 1)]
    day3 = [_backup(datetime(2025, 2, 26, 12, tzinfo=UTC))]
    policy = RetentionPolicy(max_age_days=0, keep_daily=2, min_keep=0)
    decisions = {d.backup.name: d for d in plan(day1 + day2 + day3, policy, NOW)}
    kept = sorted(n for n, d in decisions.items() if d.keep)
    assert kept == sorted([day1[0].name, day2[0].name])
    assert decisions[day1[0].name].reasons == ("daily",)
    assert decisions[day3[0].name].reasons == ("kept by no rule",)


@pytest.mark.parametrize(
    ("rule", "dates", "kept"),
    [
        ("keep_weekly", [(2025, 2, 24), (2025, 2, 23), (2025, 2, 17), (2025, 2, 16)], [0, 1]),
        ("keep_monthly", [(2025, 2, 28), (2025, 2, 1), (2025, 1, 31), (2024, 12, 31)], [0, 2]),
        ("keep_yearly", [(2025, 1, 1), (2024, 12, 31), (2024, 1, 1), (2023, 6, 1)], [0, 1]),
    ],
)
def test_retention_calendar_rules(
    rule: str, dates: list[tuple[int, int, int]], kept: list[int]
) -> None:
    backups = [_backup(datetime(*d, 12, tzinfo=UTC)) for d in dates]
    policy = RetentionPolicy(max_age_days=0, min_keep=0, **{rule: 2})
    keep = [i for i, d in enumerate(plan(backups, policy, NOW)) if d.keep]
    assert keep == kept


def test_retention_rules_combine_with_the_age_rule() -> None:
    recent = [_ago(days=d) for d in (1, 2)]
    old = [_ago(days=d) for d in (100, 101)]
    policy = RetentionPolicy(max_age_days=30, keep_last=3, min_keep=0)
    assert _names(expired(recent + old, policy, NOW)) == [old[1].name]


def test_a_one_day_rule_keeps_a_twelve_hour_old_backup() -> None:
    young, old = _ago(hours=12), _ago(days=2)
    policy = RetentionPolicy(max_age_days=1, min_keep=0)
    decisions = {d.backup.name: d for d in plan([young, old], policy, NOW)}
    assert decisions[young.name].reasons == ("within 1 days",)
    assert decisions[old.name].reasons == ("older than 1 days and kept by no other rule",)
    assert expired([young, old], policy, NOW) == [old]


def test_zero_days_keeps_nothing_by_age_even_created_this_instant() -> None:
    now_a = _backup(NOW)
    now_b = Backup("backup-2025-03-01T12-00-00-2.sql", 10, NOW, NOW, manifest=None)
    policy = RetentionPolicy(max_age_days=0, keep_last=1, min_keep=0)
    decisions = {d.backup.name: d for d in plan([now_a, now_b], policy, NOW)}
    assert decisions[now_b.name].reasons == ("among the last 1",)
    assert decisions[now_a.name].keep is False
    assert decisions[now_a.name].reasons == ("kept by no rule",)


def test_reasons_are_named_for_each_rule() -> None:
    backups = [_ago(days=d) for d in (1, 40)]
    policy = RetentionPolicy(max_age_days=30, keep_last=1, min_keep=1)
    decisions = plan(backups, policy, NOW, pinned=[backups[1].name])
    assert decisions[0].reasons == (
        "within 30 days",
        "among the last 1",
        "among the newest 1 good (floor)",
    )
    assert decisions[1].reasons == ("pinned",)


def test_retention_off_still_answers_for_every_backup() -> None:
    backups = [_ago(days=d) for d in (1, 400)]
    off = RetentionPolicy(max_age_days=0, min_keep=0)
    decisions = plan(backups, off, NOW)
    assert [d.backup for d in decisions] == backups
    assert all(d.reasons == ("retention is off",) for d in decisions)


def test_expired_honours_pins() -> None:
    old = _ago(days=40)
    assert expired([old], RetentionPolicy(min_keep=0), NOW) == [old]
    assert expired([old], RetentionPolicy(min_keep=0), NOW, pinned=[old.name]) == []


@pytest.mark.parametrize(
    ("rule", "dates", "kept"),
    [
        # One per calendar bucket, and the buckets know their year.
        # Newest first: [0] and [1] share a bucket, [2] is the same day/week/month a year
        # earlier; a bucket without the year would merge it with [0].
        ("keep_daily", ["2024-03-01T10", "2025-03-01T09", "2025-03-01T08"], [0, 2]),
        ("keep_monthly", ["2024-03-15T10", "2025-03-02T09", "2025-03-01T08"], [0, 2]),
        ("keep_weekly", ["2024-02-27T10", "2025-02-25T09", "2025-02-24T08"], [0, 2]),
        ("keep_yearly", ["2023-12-31T10", "2024-12-31T09", "2024-01-01T08"], [0, 2]),
    ],
)
def test_calendar_buckets_include_the_year(rule: str, dates: list[str], kept: list[int]) -> None:
    backups = sorted(
        (_backup(datetime.fromisoformat(d).replace(tzinfo=UTC)) for d in dates),
        key=lambda b: b.created_at,
        reverse=True,
    )
    policy = RetentionPolicy(max_age_days=0, min_keep=0, **{rule: 2})
    decisions = plan(backups, policy, NOW)
    assert [i for i, d in enumerate(decisions) if d.keep] == kept
