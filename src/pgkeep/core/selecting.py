"""Table-level restores: which tables a restore keeps, named as the manifest's `rowCounts` keys.

A selection names tables (`schema.table`, quoted where PostgreSQL's `%I` quotes) and
schemas (every table in them). It is checked against the signed manifest before any
work starts: a name the backup does not hold, a backup without row counts (nothing to
prove the kept tables against) and a restore in place of an existing database are
refused. The restore itself loads everything into staging as a full restore does,
then keeps the selected tables with what they need and drops the rest (the Restorer's
`trim`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pgkeep.core.models import Backup
from pgkeep.errors import Unprocessable

# A rowCounts key: a schema (bare, or double-quoted with "" inside), a dot, a table.
_KEY = re.compile(r'((?:"(?:[^"]|"")*")|[^".]+)\.(.+)', re.DOTALL)
NAMES_HINT = (
    "write names as the manifest's rowCounts keys: schema.table, double-quoted where "
    'PostgreSQL quotes (public.actor, "Sales Data".orders)'
)


@dataclass(frozen=True)
class Selection:
    """The tables and schemas a table-level restore keeps; empty: a full restore."""

    tables: tuple[str, ...] = ()
    schemas: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.tables or self.schemas)


EVERYTHING = Selection()


def schema_of(key: str) -> str:
    """The schema part of a rowCounts key (as written there, quotes kept)."""
    match = _KEY.fullmatch(key)
    return match[1] if match else ""


def check(selection: Selection, backup: Backup, replace: bool) -> frozenset[str]:
    """The tables the selection keeps (rowCounts keys); Unprocessable naming why it cannot be
    restored. An empty selection keeps everything (an empty set)."""
    if not selection:
        return frozenset()
    if replace:
        raise Unprocessable(
            "a table-level restore goes into a new database, never in place of an existing one",
            'leave out "replace" (--replace) and name a new targetDatabase',
        )
    counts = backup.manifest.row_counts if backup.manifest else None
    if counts is None:
        raise Unprocessable(
            f"backup {backup.name!r} has no row counts in its manifest: its tables cannot be "
            "restored one by one, nor proven",
            "restore the whole backup",
        )
    schemas = {schema_of(key) for key in counts}
    unknown = [f"table {t}" for t in selection.tables if t not in counts]
    unknown += [f"schema {s}" for s in selection.schemas if s not in schemas]
    if unknown:
        raise Unprocessable(f"backup {backup.name!r} holds no {', '.join(unknown)}", NAMES_HINT)
    chosen = set(selection.tables)
    chosen.update(key for key in counts if schema_of(key) in selection.schemas)
    return frozenset(chosen)
