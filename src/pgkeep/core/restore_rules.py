"""Where a restore may go: a new database with a sane name, or (confirmed) the backup's own
source, never a template, `postgres`, the control database or pgkeep's scratch databases."""

from __future__ import annotations

import re
from dataclasses import dataclass

from pgkeep.core.models import Backup
from pgkeep.errors import InvalidInput

_DATABASE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]{0,62}", re.ASCII)
NEVER_REPLACED = frozenset({"template0", "template1", "postgres"})
SCRATCH_PREFIX = "pgkeep_verify_"
STAGING_PREFIX = "pgkeep_restore_"


@dataclass(frozen=True)
class RestoreRules:
    """Which databases a restore may create or replace, besides the backup's own source."""

    protected: frozenset[str] = frozenset()  # the control database, never a restore target
    replace_allow: frozenset[str] = frozenset()  # PGKEEP_RESTORE_REPLACE_ALLOW


def check(
    rules: RestoreRules, backup: Backup, database: str, replace: bool, confirm: str | None
) -> None:
    """Refuse a restore into `database` that the rules forbid (InvalidInput, naming why)."""
    if (
        not _DATABASE_NAME.fullmatch(database)
        or database in NEVER_REPLACED | rules.protected
        or database.startswith((SCRATCH_PREFIX, STAGING_PREFIX))
    ):
        raise InvalidInput(
            f"cannot restore into database {database[:70]!a}",
            "use letters, digits, _ and -, starting with a letter or _, at most 63 "
            "characters; never a template, postgres, pgkeep's control database or its "
            "scratch databases",
        )
    if not replace:
        return
    source = backup.manifest.database if backup.manifest else None
    if database != source and database not in rules.replace_allow:
        raise InvalidInput(
            f"replace may only replace database {source!r}, the backup's source",
            f"{database!r} is not it; list other databases a restore may replace in "
            "PGKEEP_RESTORE_REPLACE_ALLOW, or restore into a new database",
        )
    if confirm != database:
        raise InvalidInput(
            f"replacing database {database!r} needs its name confirmed",
            "replace drops the existing database: repeat its name in confirm (--confirm NAME)",
        )
