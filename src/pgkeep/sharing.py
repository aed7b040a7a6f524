"""Alone on this machine, or one of several instances: decided here, once (wiring calls it).

With PGKEEP_CONTROL_DATABASE_URL, jobs, download tickets, API keys, changes and the databases
servers were found to hold live in the control database (postgres/control/), which
also names itself to the store; without, in pgkeep's state file (local/,
PGKEEP_STATE_DIR), shared by `pgkeep serve` and the CLI.
"""

from __future__ import annotations

from pgkeep.config import Settings
from pgkeep.errors import ConfigError
from pgkeep.local.apikeys import LocalAttempts, LocalKeyStore
from pgkeep.local.board import LocalJobBoard
from pgkeep.local.episodes import LocalEpisodes
from pgkeep.local.feed import LocalChangeFeed
from pgkeep.local.idempotency import LocalClaims
from pgkeep.local.known import LocalKnownTargets
from pgkeep.local.state import StateFile, default_directory
from pgkeep.local.tickets import LocalTicketLedger
from pgkeep.postgres.connection import Connection
from pgkeep.postgres.control.apikeys import PgAttempts, PgKeyStore
from pgkeep.postgres.control.board import PgJobBoard
from pgkeep.postgres.control.database import ControlDatabase
from pgkeep.postgres.control.episodes import PgEpisodes
from pgkeep.postgres.control.feed import PgChangeFeed
from pgkeep.postgres.control.idempotency import PgClaims
from pgkeep.postgres.control.known import PgKnownTargets
from pgkeep.postgres.control.tickets import PgTicketLedger
from pgkeep.runtime import Shared


def decide(settings: Settings, control: Connection) -> tuple[Shared, ControlDatabase | None]:
    """Alone or with other instances, decided here once: with PGKEEP_CONTROL_DATABASE_URL,
    jobs, tickets, changes, found databases, alert episodes and API keys live in the control
    database (and it names itself to the store); without, in pgkeep's state file
    (PGKEEP_STATE_DIR), shared with the CLI."""
    lease, keep = settings.job_lease_seconds, settings.job_retention
    if settings.control_database_url is not None:
        database = ControlDatabase(control)
        episodes = PgEpisodes(database)
        shared = Shared(
            PgJobBoard(database, lease_seconds=lease, keep_for=keep),
            PgTicketLedger(database),
            PgChangeFeed(database),
            database,
            PgKnownTargets(database),
            episodes,
            episodes,
            PgKeyStore(database),
            PgAttempts(database),
            PgClaims(database),
        )
        return shared, database
    where = (settings.state_dir or default_directory()).resolve()
    backups = settings.backup_dir.resolve()
    if where == backups or backups in where.parents:
        raise ConfigError(
            f"PGKEEP_STATE_DIR: {str(where)!r} is in the backup directory; pgkeep's state is "
            "never kept where a store's writer could change it: choose another directory"
        )
    state = StateFile(where)
    local = LocalEpisodes(state)
    shared = Shared(
        LocalJobBoard(state, lease_seconds=lease, keep_for=keep),
        LocalTicketLedger(state),
        LocalChangeFeed(state),
        None,
        LocalKnownTargets(state),
        local,
        local,
        LocalKeyStore(state),
        LocalAttempts(state),
        LocalClaims(state),
    )
    return shared, None
