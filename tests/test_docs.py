"""Docs kept true by tests: every setting is in the README's table, and the table names
nothing that is not a setting (datasette's tests/test_docs.py does the same)."""

from __future__ import annotations

import re
from pathlib import Path

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
