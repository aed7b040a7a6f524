from datetime import UTC, datetime, timedelta

import pytest

from pgkeep.core.models import Backup
from pgkeep.core.retention import expired

NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


def _backup(age: timedelta) -> Backup:
    created = NOW - age
    return Backup(f"backup-{created:%Y-%m-%dT%H-%M-%S}.sql", 10, created, created)


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
def test_expired_at_the_thirty_day_boundary(age: timedelta, deleted: bool) -> None:
    backup = _backup(age)
    assert (expired([backup], 30, NOW) == [backup]) is deleted


def test_expired_zero_days_disables_retention() -> None:
    assert expired([_backup(timedelta(days=999))], 0, NOW) == []


def test_expired_keeps_order_and_only_old_ones() -> None:
    old, new = _backup(timedelta(days=40)), _backup(timedelta(days=1))
    assert expired([new, old], 30, NOW) == [old]
