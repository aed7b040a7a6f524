"""Where a restore may go: sane names, never a template, postgres, the control database or
pgkeep's own scratch and staging databases; a replace only of the backup's source (or a
database the operator listed), and only with its name confirmed."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from pgkeep.core.models import Backup
from pgkeep.core.restore_rules import RestoreRules, check
from pgkeep.errors import InvalidInput
from tests.core.test_manifests import MANIFEST

AT = datetime(2025, 5, 6, 7, 8, 9, tzinfo=UTC)
BACKUP = Backup(MANIFEST.name, 1, AT, AT, manifest=MANIFEST)  # of database "shop"
RULES = RestoreRules(protected=frozenset({"pgkeep_control"}))


def _refused(
    database: str,
    *,
    replace_it: bool = False,
    confirm: str | None = None,
    rules: RestoreRules = RULES,
    backup: Backup = BACKUP,
) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        check(rules, backup, database, replace_it, confirm)
    return caught.value


@pytest.mark.parametrize(
    "database",
    ["shop_copy", "_x", "a", "A-b_9", "x" * 63, "pgkeep_verify", "pgkeep_restore", "Postgres"],
)
def test_a_new_database_with_a_sane_name_may_be_restored_into(database: str) -> None:
    check(RULES, BACKUP, database, False, None)


@pytest.mark.parametrize(
    "database",
    [
        "",
        "x" * 64,
        "1shop",
        "-shop",
        "shop copy",
        "shop;drop",
        "shop\n",
        "sh\u00f6p",  # not ASCII
        "\uff53\uff48\uff4f\uff50",  # fullwidth letters
        "shop\u0661",  # an Arabic-Indic digit
        "shop\u212a",  # the Kelvin sign, which IGNORECASE would fold to k
        'shop"',
        "template0",
        "template1",
        "postgres",
        "pgkeep_control",  # the control database
        "pgkeep_verify_0123456789abcdef",  # verify's scratch databases
        "pgkeep_verify_",
        "pgkeep_restore_0123456789abcdef",  # a restore's staging databases
    ],
)
def test_a_restore_never_goes_into(database: str) -> None:
    refused = _refused(database)
    assert refused.message == f"cannot restore into database {database[:70]!a}"
    assert refused.details == (
        "use letters, digits, _ and -, starting with a letter or _, at most 63 characters; "
        "never a template, postgres, pgkeep's control database or its scratch databases"
    )
    assert _refused(database, replace_it=True, confirm=database).message == refused.message


def test_the_control_database_is_protected_even_when_listed_for_replacing() -> None:
    rules = replace(RULES, replace_allow=frozenset({"pgkeep_control", "postgres"}))
    for database in ("pgkeep_control", "postgres"):
        _refused(database, replace_it=True, confirm=database, rules=rules)
    check(RestoreRules(), BACKUP, "pgkeep_control", False, None)  # protected only when named


def test_a_long_name_is_quoted_cut_short() -> None:
    assert _refused("é" * 100).message == f"cannot restore into database {'é' * 70!a}"


def test_replace_replaces_the_backups_source_with_its_name_confirmed() -> None:
    check(RULES, BACKUP, "shop", True, "shop")
    for confirm in (None, "", "Shop", "shop ", "other"):
        refused = _refused("shop", replace_it=True, confirm=confirm)
        assert refused.message == "replacing database 'shop' needs its name confirmed"
        assert refused.details == (
            "replace drops the existing database: repeat its name in confirm (--confirm NAME)"
        )


def test_replace_refuses_any_other_database_unless_listed() -> None:
    refused = _refused("reporting", replace_it=True, confirm="reporting")
    assert refused.message == "replace may only replace database 'shop', the backup's source"
    assert refused.details == (
        "'reporting' is not it; list other databases a restore may replace in "
        "PGKEEP_RESTORE_REPLACE_ALLOW, or restore into a new database"
    )
    listed = replace(RULES, replace_allow=frozenset({"reporting"}))
    check(listed, BACKUP, "reporting", True, "reporting")
    assert "confirmed" in _refused("reporting", replace_it=True, rules=listed).message
    assert "may only replace" in _refused("staging", replace_it=True, confirm="staging").message


def test_replace_of_a_backup_without_a_manifest_names_no_source() -> None:
    bare = replace(BACKUP, manifest=None)
    refused = _refused("shop", replace_it=True, confirm="shop", backup=bare)
    assert refused.message == "replace may only replace database None, the backup's source"
    check(RULES, bare, "shop", False, None)
