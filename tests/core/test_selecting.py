"""A table-level restore's selection, checked against the manifest's rowCounts before any
work: names written as its keys, refusals naming each name the backup lacks."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from pgkeep.core.models import Backup
from pgkeep.core.selecting import EVERYTHING, Selection, check, schema_of
from pgkeep.errors import InvalidInput, Unprocessable
from tests.core.test_manifests import MANIFEST

AT = datetime(2025, 5, 6, 7, 8, 9, tzinfo=UTC)
COUNTS = {"public.actor": 200, 'public."Film"': 3, '"Sales.Data".orders': 2, '"a""b".c': 1}
BACKUP = Backup(MANIFEST.name, 1, AT, AT, manifest=replace(MANIFEST, row_counts=COUNTS))


@pytest.mark.parametrize(
    ("key", "schema"),
    [
        ("public.actor", "public"),
        ('public."Film"', "public"),
        ('"Sales.Data".orders', '"Sales.Data"'),
        ('"a""b".c', '"a""b"'),
        ("nodot", ""),
    ],
)
def test_schema_of_a_key_keeps_its_quotes(key: str, schema: str) -> None:
    assert schema_of(key) == schema


def test_a_selection_keeps_its_tables_and_its_schemas_tables() -> None:
    chosen = Selection(tables=("public.actor",), schemas=('"Sales.Data"',))
    assert check(chosen, BACKUP, False) == {"public.actor", '"Sales.Data".orders'}
    assert check(Selection(schemas=("public",)), BACKUP, False) == {
        "public.actor",
        'public."Film"',
    }


def test_no_selection_is_a_full_restore() -> None:
    assert not EVERYTHING
    assert check(EVERYTHING, BACKUP, True) == frozenset()


def test_unknown_names_are_refused_each_named() -> None:
    chosen = Selection(tables=("public.actor", "public.film", "actor"), schemas=('"Sales',))
    with pytest.raises(Unprocessable) as caught:
        check(chosen, BACKUP, False)
    assert caught.value.message == (
        f'backup {BACKUP.name!r} holds no table public.film, table actor, schema "Sales'
    )
    assert "rowCounts" in caught.value.details
    assert isinstance(caught.value, InvalidInput)  # exit code 2 in the CLI


def test_a_table_level_restore_never_replaces() -> None:
    with pytest.raises(Unprocessable, match="new database"):
        check(Selection(tables=("public.actor",)), BACKUP, True)


def test_a_backup_without_row_counts_cannot_be_restored_by_table() -> None:
    uncounted = Backup(MANIFEST.name, 1, AT, AT, manifest=replace(MANIFEST, row_counts=None))
    with pytest.raises(Unprocessable, match="no row counts"):
        check(Selection(tables=("public.actor",)), uncounted, False)
