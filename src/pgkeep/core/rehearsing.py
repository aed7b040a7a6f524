"""Upgrade rehearsals: after a verify's test restore, the backup is restored into each
server of PGKEEP_REHEARSAL_DATABASE_URLS (the next PostgreSQL major, typically), as the
loader and without owners or grants (a bare session: roles missing there fail nothing),
its rows proven, the scratch database dropped. Each answers per server and major: rows
proven, or the first error. A rehearsal is a finding about the next major, never about
the backup: it never changes the verify's verdict, and nothing it meets is raised.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

from pgkeep.core.catalog import Catalog
from pgkeep.core.control import Control
from pgkeep.core.encryption import Keys
from pgkeep.core.models import Backup, Rehearsal, TableComparison
from pgkeep.core.ports import Restorer
from pgkeep.core.reading import Reading
from pgkeep.core.restore_rules import SCRATCH_PREFIX
from pgkeep.errors import Cancelled, PgkeepError

logger = logging.getLogger(__name__)


class Loads(Protocol):
    """What a rehearsal needs of core/proving.py's Proving."""

    keys: Keys

    def load_and_compare(
        self,
        catalog: Catalog,
        reading: Reading,
        restorer: Restorer,
        database: str,
        control: Control | None,
        job: str,
        bare: bool = False,
    ) -> tuple[TableComparison, ...]: ...


def rehearse(
    proving: Loads,
    servers: Sequence[Restorer],
    catalog: Catalog,
    backup: Backup,
    control: Control | None,
    job: str,
) -> tuple[Rehearsal, ...]:
    """Restore `backup` into each server in turn, one read each; what each proved."""
    return tuple(_one(proving, server, catalog, backup, control, job) for server in servers)


def _one(
    proving: Loads,
    restorer: Restorer,
    catalog: Catalog,
    backup: Backup,
    control: Control | None,
    job: str,
) -> Rehearsal:
    database = SCRATCH_PREFIX + job
    try:
        major = restorer.offers(()).major
    except PgkeepError as exc:
        return Rehearsal(restorer.server, 0, False, f"unreachable: {exc.message}")
    try:
        restorer.create(database)
        try:
            reading = Reading(catalog.storage, backup, proving.keys, control)
            tables = proving.load_and_compare(
                catalog, reading, restorer, database, control, job, bare=True
            )
        finally:
            _drop(restorer, database)
    except Cancelled:
        raise
    except PgkeepError as exc:
        logger.warning(
            "rehearsal of %s on %s (PostgreSQL %d) failed: %s",
            backup.name,
            restorer.server,
            major,
            exc.message,
        )
        return Rehearsal(restorer.server, major, False, first_error(exc))
    rows = sum(t.actual for t in tables)
    details = f"restored into PostgreSQL {major}: {len(tables)} tables, {rows} rows proven"
    return Rehearsal(restorer.server, major, True, details)


def first_error(exc: PgkeepError) -> str:
    """The error's message and the server's first `ERROR:` line, when it gave one."""
    line = next((ln for ln in exc.details.splitlines() if "ERROR:" in ln), "")
    said = line[line.index("ERROR:") :].strip() if line else exc.details.strip()[:300]
    return f"{exc.message}: {said}" if said else exc.message


def _drop(restorer: Restorer, database: str) -> None:
    try:
        restorer.drop(database)
    except PgkeepError as exc:
        logger.error("could not drop database %s: %s %s", database, exc.message, exc.details)
