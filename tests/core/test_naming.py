from datetime import UTC, datetime, timedelta, timezone

import pytest

from pgkeep.core import naming
from pgkeep.errors import InvalidInput

T = datetime(2024, 12, 9, 10, 30, 45, 123000, tzinfo=UTC)


def test_make_name_is_utc_seconds() -> None:
    assert naming.make_name(T, set()) == "backup-2024-12-09T10-30-45.sql"
    east = T.astimezone(timezone(timedelta(hours=5)))
    assert naming.make_name(east, set()) == "backup-2024-12-09T10-30-45.sql"


def test_make_name_same_second_gets_suffix() -> None:
    first = naming.make_name(T, set())
    second = naming.make_name(T, {first})
    third = naming.make_name(T, {first, second})
    assert (second, third) == (
        "backup-2024-12-09T10-30-45-2.sql",
        "backup-2024-12-09T10-30-45-3.sql",
    )
    assert naming.is_backup_name(second)


@pytest.mark.parametrize(
    "name",
    [
        "backup-2024-12-09T10-30-45.sql",
        "backup-2024-12-09T10-30-45-2.sql",
        "backup-2024-12-09T10-30-45-9999.sql",
    ],
)
def test_validate_name_accepts_backup_names(name: str) -> None:
    assert naming.validate_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "backup.sql",
        "../backup-2024-12-09T10-30-45.sql",
        "backup-2024-12-09T10-30-45.sql/",
        "backup-2024-12-09T10-30-45.sql.partial",
        "backup-2024-12-09T10-30-45.SQL",
        "backup-2024-13-09T10-30-45.sql",  # month 13
        "backup-2024-12-09T10-30-45-1.sql",  # suffixes start at 2
        "backup-2024-12-09T10-30-45-01.sql",
        "backup-2024-12-09T10-30-45.sql\x00.txt",
        "backup-2024-12-09T10-30-45.sql\n",
        "/etc/passwd",
        "..\\..\\windows\\win.ini",
        "b" * 5000,
    ],
)
def test_validate_name_refuses_everything_else(name: str) -> None:
    with pytest.raises(InvalidInput, match="invalid backup name"):
        naming.validate_name(name)


def test_created_at_reads_the_name() -> None:
    assert naming.created_at("backup-2024-12-09T10-30-45-3.sql") == T.replace(microsecond=0)


def test_sort_key_orders_suffixes_after_their_base() -> None:
    names = [
        "backup-2024-12-09T10-30-45-10.sql",
        "backup-2024-12-09T10-30-45.sql",
        "backup-2024-12-09T10-30-46.sql",
        "backup-2024-12-09T10-30-45-2.sql",
    ]
    assert sorted(names, key=naming.sort_key) == [
        "backup-2024-12-09T10-30-45.sql",
        "backup-2024-12-09T10-30-45-2.sql",
        "backup-2024-12-09T10-30-45-10.sql",
        "backup-2024-12-09T10-30-46.sql",
    ]
