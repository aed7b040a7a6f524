"""Docs kept true by tests: every setting is in the README's table, and the table names
nothing that is not a setting (datasette's tests/test_docs.py does the same)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pgkeep.config import Settings
from pgkeep.config_file import Overrides, ServerConfig, StoreConfig, TargetConfig

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text()
_ROW = re.compile(r"^\| (`PGKEEP_[A-Z0-9_]+`(?: / `[A-Z0-9_]+`)*)", re.MULTILINE)


def _documented() -> set[str]:
    names: set[str] = set()
    for cell in _ROW.findall(README):
        for raw in re.findall(r"`([A-Z0-9_]+)`", cell):
            # `PGKEEP_RETENTION_KEEP_DAILY` / `_WEEKLY`: a suffix completes the first name.
            names.add(raw if raw.startswith("PGKEEP_") else _stem(cell) + raw)
    return names


def _stem(cell: str) -> str:
    first: str = re.findall(r"`(PGKEEP_[A-Z0-9_]+)`", cell)[0]
    return first.rsplit("_", 1)[0]


# Tables of the configuration file, documented in docs/configuration.md, not settings of their own.
FILE_TABLES = {"targets", "servers", "stores"}


def _settings() -> set[str]:
    return {f"PGKEEP_{name.upper()}" for name in Settings.model_fields if name not in FILE_TABLES}


def test_the_configuration_page_names_every_override() -> None:
    page = (ROOT / "docs" / "configuration.md").read_text()
    for name in [
        *Overrides.model_fields,
        *TargetConfig.model_fields,
        *ServerConfig.model_fields,
        *StoreConfig.model_fields,
    ]:
        assert f"`{name}`" in page, f"docs/configuration.md does not name `{name}`"


def test_every_setting_is_in_the_readme_table() -> None:
    missing = _settings() - _documented()
    assert not missing, f"add to the README's settings table: {sorted(missing)}"


def test_the_readme_table_names_only_settings() -> None:
    unknown = _documented() - _settings()
    assert not unknown, f"not settings: {sorted(unknown)}"


def test_docs_link_only_to_files_that_exist() -> None:
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", doc.read_text()):
            assert (doc.parent / target).exists(), f"{doc.name} links to missing {target}"


def test_the_threat_model_names_only_tests_that_exist() -> None:
    """Each claim of docs/threat-model.md names the test that proves it: that test exists."""
    page = (ROOT / "docs" / "threat-model.md").read_text()
    sources = {p: p.read_text() for p in (ROOT / "tests").rglob("*.py")}
    defined = {name for text in sources.values() for name in re.findall(r"def (test_\w+)\(", text)}
    named = set(re.findall(r"(?<![/\w])(test_\w+)\b(?!\.py)", page))
    assert named, "the threat model names no test"
    assert not named - defined, f"no such tests: {sorted(named - defined)}"
    for path in re.findall(r"`(tests/[\w/]+\.py)", page):
        assert (ROOT / path).exists(), f"docs/threat-model.md names a missing file {path}"


def test_the_least_privilege_sql_in_the_docs_is_the_one_make_run_uses() -> None:
    from pgkeep.postgres.privileges import SETUP_SQL

    page = (ROOT / "docs" / "operations.md").read_text()
    documented = SETUP_SQL.format(role="pgkeep", password="'…'", owners="shop_owner")
    assert documented in page, "docs/operations.md's least-privilege SQL differs from SETUP_SQL"


def test_the_install_page_names_every_deploy_file_and_only_tests_and_targets_that_exist() -> None:
    page = (ROOT / "docs" / "install.md").read_text()
    shipped = [ROOT / "Containerfile", ROOT / "compose.yaml", *(ROOT / "deploy").rglob("*")]
    for path in (p for p in shipped if p.is_file() and "__pycache__" not in p.parts):
        assert path.relative_to(ROOT).as_posix() in page, f"docs/install.md does not name {path}"
    for named in re.findall(r"`(tests/[\w/]+\.py)`", page):
        assert (ROOT / named).exists(), f"docs/install.md names a missing {named}"
    makefile = (ROOT / "Makefile").read_text()
    for target in re.findall(r"`make ([\w-]+)`", page):
        assert re.search(rf"^{target}:", makefile, re.MULTILINE), f"no make target {target}"


# What the docs once said that the code no longer does (issue 20's list): never again.
STALE_CLAIMS = [
    ("docs/api.md", "a restart invalidates outstanding links"),
    ("docs/operations.md", "Until several instances"),
    ("docs/operations.md", "The manifest (`schemaVersion` 1)"),
    ("docs/api.md", "in `pgkeep-jobs.json`"),
    ("docs/runbooks/restore.md", "-f backup-2024-12-09T04-00-00.sql"),
]


@pytest.mark.parametrize(("page", "claim"), STALE_CLAIMS)
def test_the_docs_do_not_say_what_is_no_longer_true(page: str, claim: str) -> None:
    assert claim not in (ROOT / page).read_text()


def test_the_docs_say_what_operators_asked() -> None:
    """Where a TOML target's password goes; backups in S3 in the restore runbook; how long
    `make test` takes."""
    assert ".pgpass" in (ROOT / "docs" / "configuration.md").read_text()
    assert "## Backups in S3" in (ROOT / "docs" / "runbooks" / "restore.md").read_text()
    assert "minutes on two cores" in (ROOT / "README.md").read_text()
