"""Drift, pure: what counts as much less than the backup before."""

from __future__ import annotations

from datetime import UTC, datetime

from pgkeep.core.drift import MIN_SIZE_BYTES, DriftPolicy, baseline, compare
from pgkeep.core.manifest_json import drift_json
from pgkeep.core.models import (
    Backup,
    Compression,
    Drift,
    DumpFormat,
    Manifest,
    TableDrift,
    Trust,
)

AT = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
POLICY = DriftPolicy()


def _manifest(name: str, counts: dict[str, int] | None, size: int = 100) -> Manifest:
    return Manifest(
        name=name,
        format=DumpFormat.PLAIN,
        compression=Compression.NONE,
        level=0,
        size_bytes=size,
        sha256="0" * 64,
        database="shop",
        server_version="18.6",
        pg_dump_version="18.6",
        started_at=AT,
        finished_at=AT,
        created_by="alice",
        row_counts=counts,
    )


def _backup(name: str, counts: dict[str, int] | None, trust: Trust = Trust.SIGNED) -> Backup:
    return Backup(name, 100, AT, AT, manifest=_manifest(name, counts), trust=trust)


def test_a_table_that_lost_more_than_the_share_of_its_rows_is_drift() -> None:
    before = _manifest("a.sql", {"public.orders": 10_000, "public.users": 5_000})
    drift = compare(before, {"public.orders": 4_999, "public.users": 5_000}, 100, True, POLICY)
    assert drift == Drift("a.sql", (TableDrift("public.orders", 10_000, 4_999),))
    assert drift.reasons() == ("table public.orders lost 5001 of 10000 rows",)


def test_losing_exactly_the_share_or_less_is_not_drift() -> None:
    before = _manifest("a.sql", {"public.orders": 10_000})
    assert compare(before, {"public.orders": 5_000}, 100, True, POLICY) is None
    assert compare(before, {"public.orders": 12_000}, 100, True, POLICY) is None


def test_small_tables_never_flap() -> None:
    before = _manifest("a.sql", {"public.tiny": 999, "public.edge": 1000})
    drift = compare(before, {"public.tiny": 0, "public.edge": 0}, 100, True, POLICY)
    assert drift is not None
    assert [t.table for t in drift.tables] == ["public.edge"]
    assert (
        compare(before, {"public.tiny": 0, "public.edge": 0}, 100, True, DriftPolicy(min_rows=1001))
        is None
    )


def test_a_table_that_disappeared_is_drift_unless_it_was_empty() -> None:
    before = _manifest("a.sql", {"public.gone": 3, "public.empty": 0, "public.kept": 1})
    drift = compare(before, {"public.kept": 1}, 100, True, POLICY)
    assert drift is not None
    assert drift.tables == (TableDrift("public.gone", 3, None),)
    assert drift.reasons() == ("table public.gone is gone (3 rows before)",)
    assert drift_json(drift) == {
        "previous": "a.sql",
        "reasons": ["table public.gone is gone (3 rows before)"],
        "tables": [{"table": "public.gone", "before": 3, "after": None}],
        "sizeBefore": None,
        "sizeAfter": None,
    }


def test_a_dump_that_shrank_by_more_than_the_share_is_drift_when_sizes_compare() -> None:
    big = 10 * MIN_SIZE_BYTES
    before = _manifest("a.sql", {"public.t": 1}, size=big)
    shrunk = big // 2 - 1
    drift = compare(before, {"public.t": 1}, shrunk, True, POLICY)
    assert drift == Drift("a.sql", (), big, shrunk)
    assert drift.reasons() == (f"the dump shrank from {big} to {shrunk} bytes",)
    assert compare(before, {"public.t": 1}, big // 2, True, POLICY) is None
    # Another format, compression or encryption: sizes say nothing.
    assert compare(before, {"public.t": 1}, shrunk, False, POLICY) is None


def test_small_dumps_are_never_compared_by_size() -> None:
    before = _manifest("a.sql", {"public.t": 1}, size=MIN_SIZE_BYTES - 1)
    assert compare(before, {"public.t": 1}, 10, True, POLICY) is None


def test_thresholds_and_the_off_switch_are_the_policys() -> None:
    before = _manifest("a.sql", {"public.t": 10_000}, size=10 * MIN_SIZE_BYTES)
    strict = DriftPolicy(rows_percent=10, size_percent=10)
    drift = compare(before, {"public.t": 8_999}, 9 * MIN_SIZE_BYTES - 1, True, strict)
    assert drift is not None
    assert drift.tables
    assert drift.size_before is not None
    off = DriftPolicy(enabled=False)
    assert compare(before, {}, 0, True, off) is None


def test_no_baseline_counts_nothing_compared_and_no_new_counts_still_compares_size() -> None:
    assert compare(_manifest("a.sql", None), {"public.t": 0}, 1, True, POLICY) is None
    big = 10 * MIN_SIZE_BYTES
    before = _manifest("a.sql", {"public.t": 5000}, size=big)
    assert compare(before, None, big, True, POLICY) is None
    # The new dump grew past the row-count limit (no counts): a shrunk dump is still told.
    assert compare(before, None, MIN_SIZE_BYTES, True, POLICY) == Drift(
        "a.sql", (), big, MIN_SIZE_BYTES
    )


def test_the_baseline_is_the_newest_earlier_signed_backup_with_row_counts() -> None:
    backups = [
        _backup("new.sql", {"public.t": 1}),
        _backup("planted.sql", {"public.t": 1}, Trust.UNSIGNED),
        _backup("toobig.sql", None),
        _backup("good.sql", {"public.t": 1}),
        _backup("older.sql", {"public.t": 1}),
    ]
    found = baseline(backups, "new.sql")
    assert found is not None
    assert found.name == "good.sql"
    assert baseline(backups[:3], "new.sql") is None
