"""What pgkeep's role may do on a server, asked at start and named when it is missing.

pgkeep is meant to run as a role that is no superuser (docs/operations.md, least
privilege: `SETUP_SQL`). A start is refused when a server that answers says the role
cannot do what backups need: read every table of an explicit target, or keep its
tables in the control database. What only restores need (CREATEDB, CREATEROLE, a
loader that can log in) never stops a start: it is named at start and in /readyz
details, and restores fail naming it.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg

from pgkeep.errors import ConfigError, DatabaseUnavailable
from pgkeep.postgres import server
from pgkeep.postgres.connection import Connection
from pgkeep.postgres.control import ledger

logger = logging.getLogger(__name__)

# The documented way to run: a role for pgkeep that is no superuser. {role}, {password}
# and {owners} (the roles that own what is backed up) are filled in by whoever runs it.
SETUP_SQL = """\
CREATE ROLE {role} LOGIN PASSWORD {password} NOSUPERUSER CREATEDB CREATEROLE;
GRANT pg_read_all_data, pg_signal_backend TO {role};
CREATE DATABASE {role} OWNER {role};
CREATE ROLE pgkeep_loaders NOLOGIN;
GRANT pgkeep_loaders TO {role} WITH ADMIN OPTION;
GRANT {owners} TO {role} WITH ADMIN OPTION;
"""

_ROLE = """
SELECT r.rolsuper, r.rolcreatedb, r.rolcreaterole, r.rolbypassrls,
       pg_catalog.pg_has_role(r.oid, 'pg_read_all_data', 'MEMBER')
FROM pg_catalog.pg_roles r WHERE r.rolname = current_user
"""
_UNREADABLE = """
SELECT pg_catalog.format('%I.%I', n.nspname, c.relname)
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'S', 'm')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%%'
  AND NOT pg_catalog.has_table_privilege(c.oid, 'SELECT')
ORDER BY 1 LIMIT 3
"""


def check_dump(target: Connection) -> None:
    """Refuse (ConfigError) a role that cannot read every table of a target that answers;
    a target that does not answer is no reason to refuse (its creates fail until it does)."""
    try:
        with server.connect(target) as conn:
            role = conn.execute(_ROLE).fetchone()
            if role is None or role[0] or role[4]:
                return
            unreadable = [str(r[0]) for r in conn.execute(_UNREADABLE).fetchall()]
            user = str(conn.info.user)
    except DatabaseUnavailable:
        return
    if unreadable:
        raise ConfigError(
            f"role {user!r} cannot read every table of database {target.dbname!r} at "
            f"{target.address} (such as {', '.join(unreadable)})",
            f"GRANT pg_read_all_data TO {user} (docs/operations.md, least privilege)",
        )


def check_control(control: Connection) -> str:
    """Make pgkeep's tables in the control database: ConfigError when the server answers and
    refuses; DatabaseUnavailable when it does not answer (pgkeep then starts not ready)."""
    try:
        with server.connect(control) as conn:
            ledger.setup(conn)
            return f"{control.address}/{control.dbname} usable"
    except psycopg.errors.InsufficientPrivilege as exc:
        user = control_user(control)
        raise ConfigError(
            f"the control database {control.dbname!r} at {control.address} refuses pgkeep's "
            f"tables: {str(exc).strip()}",
            f"CREATE DATABASE {user} OWNER {user}, then PGKEEP_SCHEDULE_DATABASE={user} (or "
            "PGKEEP_CONTROL_DATABASE_URL naming it)",
        ) from None
    except psycopg.Error as exc:
        raise DatabaseUnavailable(
            f"cannot use the control database {control.dbname!r} at {control.address}",
            control.redact(str(exc).strip()),
        ) from None


def restore_notes(admin: Connection) -> list[str]:
    """What a restore on this server will miss: role attributes (empty: nothing)."""
    with server.connect(admin) as conn:
        role: Any = conn.execute(_ROLE).fetchone()
    if role is None or role[0]:
        return []
    notes = []
    if not role[1]:
        notes.append("CREATEDB (restores make a staging database)")
    if not role[2]:
        notes.append("CREATEROLE (rows are loaded by a temporary role)")
    return notes


def control_user(control: Connection) -> str:
    try:
        with server.connect(control) as conn:
            return str(conn.info.user)
    except DatabaseUnavailable:
        return "pgkeep"
