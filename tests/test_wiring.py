"""What wiring hands every target's use cases (no server is reached to build them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgkeep import wiring
from pgkeep.config import load_settings
from pgkeep.core.restore_rules import RestoreRules, check
from pgkeep.errors import InvalidInput
from pgkeep.storage import MemoryStorage
from tests.conftest import SECRET
from tests.core.test_restore_rules import BACKUP

SERVER = "postgresql://u:p@127.0.0.1:1"


def test_the_control_database_and_the_replace_allow_list_reach_the_restore_rules(
    tmp_path: Path,
) -> None:
    settings = load_settings(
        database_url=f"{SERVER}/shop",
        jwt_secret=SECRET,
        backup_dir=tmp_path,
        control_database_url=f"{SERVER}/pgkeep_control",
        restore_replace_allow="reporting,staging",
    )
    rules = wiring.build(settings, storage=MemoryStorage()).service().proving.rules
    assert rules == RestoreRules(
        protected=frozenset({"pgkeep_control"}),
        replace_allow=frozenset({"reporting", "staging"}),
    )
    with pytest.raises(InvalidInput, match="cannot restore into database 'pgkeep_control'"):
        check(rules, BACKUP, "pgkeep_control", False, None)
    check(rules, BACKUP, "reporting", True, "reporting")
