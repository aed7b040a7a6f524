import time
from datetime import UTC, datetime, timedelta, timezone

import pytest

from pgkeep.core import naming
from pgkeep.core.models import Compression, DumpFormat
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
        "backup-2024-12-9T10-30-45.sql",  # a one-digit day
        "backup-2024-1-09T10-30-45.sql",
        "backup-2024-12-09T1-30-45.sql",
        "backup-2024-12-09T10-3-45.sql",
        "backup-2024-12-09T10-30-5.sql",
        "backup-02024-12-09T10-30-45.sql",
        "backup-2024-12-09T10-30-45-10000.sql",
        "backup-2024-12-09T10-30-45-.sql",
        "backup-2024-12-09T10-30-45-0.sql",
        "backup-2024-02-30T10-30-45.sql",  # 30 February
        "backup-2024-12-09T24-30-45.sql",
        "backup-2024-12-09 10-30-45.sql",
        "backup-2024-12-09T10-30-45.sql.bz2",
        "Backup-2024-12-09T10-30-45.sql",
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


@pytest.mark.parametrize(
    "name",
    [
        "backup-٢٠٢٤-12-09T10-30-45.sql",  # Arabic-Indic digits: \d matched them, int() read them
        "backup-\uff12\uff10\uff12\uff14-12-09T10-30-45.sql",  # fullwidth
        "backup-2024-12-09T10-30-45-\u0662.sql",
        "backup-2024-12-09T10-30-45.sql\u2028",
    ],
)
def test_validate_name_is_ascii_only(name: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        naming.validate_name(name)
    assert caught.value.message.isascii()  # echoed escaped, never as sent


@pytest.mark.parametrize(
    "moment",
    [
        datetime(1000, 1, 1, tzinfo=UTC),
        datetime(2024, 2, 29, 23, 59, 59, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC),
    ],
)
@pytest.mark.parametrize("extension", [".sql", ".sql.gz", ".sql.zst", ".dump"])
def test_every_name_make_name_writes_validates_and_parses_back(
    moment: datetime, extension: str
) -> None:
    taken: set[str] = set()
    for _ in range(3):
        name = naming.make_name(moment, taken, extension)
        assert naming.validate_name(name) == name
        assert naming.created_at(name) == moment
        assert naming.manifest_name(name) == name + ".json"
        taken.add(name)
    assert naming.kind(name)[0].value == ("custom" if extension == ".dump" else "plain")


def test_make_name_refuses_what_it_could_not_read_back() -> None:
    with pytest.raises(InvalidInput):
        naming.make_name(datetime(999, 1, 1, tzinfo=UTC), set())
    with pytest.raises(InvalidInput):
        naming.make_name(T, set(), ".tar")


def test_make_name_counts_suffixes_across_extensions() -> None:
    assert naming.make_name(T, {"backup-2024-12-09T10-30-45.dump"}, ".sql") == (
        "backup-2024-12-09T10-30-45-2.sql"
    )
    full = {f"backup-2024-12-09T10-30-45-{n}.sql" for n in range(2, 10000)}
    full.add("backup-2024-12-09T10-30-45.sql")
    with pytest.raises(InvalidInput, match="too many backups"):
        naming.make_name(T, full)


def test_kind_reads_each_suffix() -> None:
    assert naming.kind("backup-2024-12-09T10-30-45.sql.gz") == (DumpFormat.PLAIN, Compression.GZIP)
    assert naming.kind("backup-2024-12-09T10-30-45.sql.zst") == (DumpFormat.PLAIN, Compression.ZSTD)
    assert naming.kind("backup-2024-12-09T10-30-45-7.dump") == (DumpFormat.CUSTOM, Compression.NONE)
    with pytest.raises(InvalidInput):
        naming.kind("backup.sql")


def test_make_name_is_utc_whatever_the_local_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    try:
        assert naming.make_name(T, set()) == "backup-2024-12-09T10-30-45.sql"
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_make_name_uses_the_last_sequence_number() -> None:
    taken = {f"backup-2024-12-09T10-30-45-{n}.sql" for n in range(2, 9999)}
    taken.add("backup-2024-12-09T10-30-45.sql")
    assert naming.make_name(T, taken) == "backup-2024-12-09T10-30-45-9999.sql"


def test_validate_name_says_what_a_name_looks_like() -> None:
    with pytest.raises(InvalidInput) as caught:
        naming.validate_name("nope")
    assert caught.value.details == (
        "expected backup-YYYY-MM-DDTHH-MM-SS.sql (or .sql.gz, .sql.zst, .dump), "
        "optionally with a -N suffix"
    )


def test_parse_reads_every_part_of_a_name() -> None:
    parsed = naming.parse("backup-2024-12-09T10-30-45-17.sql.zst")
    assert parsed == naming.Parsed(datetime(2024, 12, 9, 10, 30, 45, tzinfo=UTC), 17, ".sql.zst")
    assert parsed.created_at.tzinfo is UTC
    first = naming.parse("backup-2024-12-09T10-30-45.dump")
    assert first == naming.Parsed(datetime(2024, 12, 9, 10, 30, 45, tzinfo=UTC), 1, ".dump")
    assert naming.parse("backup-2024-12-09T10-30-45-2.sql.gz") == naming.Parsed(
        datetime(2024, 12, 9, 10, 30, 45, tzinfo=UTC), 2, ".sql.gz"
    )
    assert naming.parse("backup-2024-12-09T10-30-45-1.sql") is None
    assert naming.parse("backup-2024-12-09T10-30-45.sql" + " " * 40) is None
    assert naming.MAX_SEQUENCE == 9999
