"""The loader: a temporary login role, no superuser, that runs a restore's rows and every
entry a non-superuser owns.

A database owner's code runs wherever a restore evaluates it: CHECK constraints,
domain checks and generated columns for every row, but also a view's or default's
domain-array constant, a partition bound, an FK's check through a cast. `SET ROLE`
is no boundary (a CHECK's function can `RESET ROLE`), so the session that runs
those entries authenticates as this role: NOSUPERUSER NOCREATEDB NOCREATEROLE
NOBYPASSRLS, in the group `pgkeep_loaders` (which pg_hba can name), valid until the
job's deadline, with a connection limit (the loaded code may change its password,
not those). It holds what the load needs: membership in the roles that own what is
there (not superusers, not pgkeep itself; from PostgreSQL 16 without the SET option,
so loaded code cannot become them), CREATE on the database and its schemas,
INSERT/REFERENCES/UPDATE/USAGE on what superusers or pgkeep own. What it makes is
given to its owners by the admin (core/loading.py). Its password is a SCRAM verifier computed
here (never cleartext SQL); it reaches psql/pg_restore in a private, unlinked PGPASSFILE.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import logging
import os
import secrets
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from pgkeep.errors import DatabaseUnavailable, RestoreFailed
from pgkeep.postgres import server
from pgkeep.postgres.connection import Connection

logger = logging.getLogger(__name__)
GROUP = "pgkeep_loaders"
PREFIX = "pgkeep_load_"
SCRAM_ITERATIONS = 4096
_PREDEFINED = r"pg\_%"

# The role whose loader this is, when it may be joined: no superuser, not predefined, not
# pgkeep's own, not a loader (`pg_database_owner`: the database's owner).
_MEMBER = """
SELECT r.rolname FROM pg_catalog.pg_roles r
WHERE r.rolname = CASE WHEN %(owner)s = 'pg_database_owner'
    THEN (SELECT pg_catalog.pg_get_userbyid(d.datdba) FROM pg_catalog.pg_database d
          WHERE d.datname = pg_catalog.current_database())
    ELSE %(owner)s END
  AND NOT r.rolsuper AND r.rolname NOT LIKE %(predefined)s AND r.rolname <> current_user
  AND r.rolname NOT LIKE %(loaders)s
"""
# Tables superusers or pgkeep own: the loader may load their rows, and nothing of others'.
_ADMIN_TABLES = """
SELECT n.nspname, c.relname FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_roles r ON r.oid = c.relowner
WHERE (r.rolsuper OR r.rolname = current_user) AND c.relkind IN ('r', 'p')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%%'
ORDER BY 1, 2
"""
_SCHEMAS = """
SELECT n.nspname FROM pg_catalog.pg_namespace n
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp%%'
ORDER BY 1
"""
_ADMIN_OBJECTS = """
SELECT l.oid FROM pg_catalog.pg_largeobject_metadata l
JOIN pg_catalog.pg_roles r ON r.oid = l.lomowner
WHERE r.rolsuper OR r.rolname = current_user
"""
# A superuser's table whose checks, defaults, generated columns or domains call a function
# a non-superuser owns: loading it would run that role's code on a superuser's table.
_RISKY = """
WITH su_tables AS (
  SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_roles r ON r.oid = c.relowner
  WHERE r.rolsuper AND c.relkind IN ('r', 'p')),
exprs AS (
  SELECT k.conrelid AS rel, k.oid AS obj, 'pg_catalog.pg_constraint'::pg_catalog.regclass AS cls
  FROM pg_catalog.pg_constraint k WHERE k.conrelid IN (SELECT oid FROM su_tables)
  UNION ALL
  SELECT d.adrelid, d.oid, 'pg_catalog.pg_attrdef'::pg_catalog.regclass
  FROM pg_catalog.pg_attrdef d WHERE d.adrelid IN (SELECT oid FROM su_tables)
  UNION ALL
  SELECT a.attrelid, k.oid, 'pg_catalog.pg_constraint'::pg_catalog.regclass
  FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_constraint k ON k.contypid = a.atttypid
  WHERE a.attrelid IN (SELECT oid FROM su_tables) AND NOT a.attisdropped)
SELECT DISTINCT e.rel::pg_catalog.regclass::text, p.oid::pg_catalog.regprocedure::text, o.rolname
FROM exprs e
JOIN pg_catalog.pg_depend dep ON dep.classid = e.cls AND dep.objid = e.obj
  AND dep.refclassid = 'pg_catalog.pg_proc'::pg_catalog.regclass
JOIN pg_catalog.pg_proc p ON p.oid = dep.refobjid
JOIN pg_catalog.pg_roles o ON o.oid = p.proowner AND NOT o.rolsuper
ORDER BY 1, 2
"""


def scram_verifier(password: str, salt: bytes | None = None) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores (RFC 5802/7677), so the password itself
    never travels in SQL (nor lands in a server log)."""
    salt = salt if salt is not None else os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, SCRAM_ITERATIONS)
    client = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored = hashlib.sha256(client).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    salt64, stored64, key64 = (base64.b64encode(x).decode() for x in (salt, stored, server_key))
    return f"SCRAM-SHA-256${SCRAM_ITERATIONS}:{salt64}${stored64}:{key64}"


class Loader:
    """One restore's loader role on one server (`admin`: a session there that may create it)."""

    def __init__(
        self, admin: Connection, name: str, connections: int, tmp_dir: Path | None
    ) -> None:
        self.name = PREFIX + name
        self._admin = admin
        self._password = secrets.token_urlsafe(32)
        self._connections = connections
        self._tmp_dir = tmp_dir

    def conninfo(self, database: str) -> str:
        """The loader's connection to `database`: the admin's server and options, its user."""
        params = {k: str(v) for k, v in conninfo_to_dict(self._admin.conninfo).items()}
        params.update(dbname=database, user=self.name)
        params.pop("passfile", None)
        return make_conninfo(**params)

    def create(self, valid_until: datetime) -> None:
        query = sql.SQL(
            "CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS NOREPLICATION"
            " INHERIT CONNECTION LIMIT {} VALID UNTIL {} PASSWORD {} IN ROLE {}"
        ).format(
            sql.Identifier(self.name),
            sql.Literal(self._connections),
            sql.Literal(valid_until.isoformat()),
            sql.Literal(scram_verifier(self._password)),
            sql.Identifier(GROUP),
        )
        with self._session() as conn:
            ensure_group(conn)
            _run(conn, query, f"create the loader role {self.name}")
            # What the loader makes is pgkeep's to drop (DROP OWNED needs the role's
            # privileges; PostgreSQL 16 gives a role's creator only the ADMIN option).
            mine = sql.SQL("GRANT {} TO CURRENT_USER").format(sql.Identifier(self.name))
            _run(conn, mine, f"take the loader role {self.name}")

    def grant(self, database: str, owner: str = "") -> None:
        """What running `owner`'s entries in `database` needs (call again after more objects
        appear): membership in that role only, so its code has its rights and no other
        owner's; RestoreFailed naming a superuser's table that would run another role's
        code."""
        with self._session(database) as conn:
            risky = conn.execute(_RISKY).fetchall()
            if risky:
                listed = "; ".join(f"{t} calls {f} (owned by {o})" for t, f, o in risky[:5])
                raise RestoreFailed(
                    "a superuser's table checks its rows with a function another role owns; "
                    "nothing was loaded",
                    f"{listed}: make the table's owner own the function too, or restore by hand",
                )
            me = sql.Identifier(self.name)
            # From 16 a membership can be without SET: the loaded code cannot become its owner
            # (and, say, change that role's password), and ALTER … OWNER TO is the admin's.
            no_set = sql.SQL(
                " WITH INHERIT TRUE, SET FALSE" if conn.info.server_version >= 160000 else ""
            )
            loaders = PREFIX.replace("_", r"\_") + "%"
            found = {"owner": owner, "predefined": _PREDEFINED, "loaders": loaders}
            for (member,) in conn.execute(_MEMBER, found).fetchall():
                _run(
                    conn,
                    sql.SQL("GRANT {} TO {}").format(sql.Identifier(member), me) + no_set,
                    f"make the loader a member of {member!r} (grant pgkeep's role that role "
                    "WITH ADMIN OPTION)",
                )
            _run(
                conn,
                sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(sql.Identifier(database), me),
                f"grant the loader CREATE on {database!r}",
            )
            for (schema,) in conn.execute(_SCHEMAS).fetchall():
                ident = sql.Identifier(schema)
                for grant in (
                    "GRANT USAGE, CREATE ON SCHEMA {} TO {}",
                    "GRANT REFERENCES ON ALL TABLES IN SCHEMA {} TO {}",
                ):
                    _run(conn, sql.SQL(grant).format(ident, me), f"grant the loader {schema!r}")
            for schema, table in conn.execute(_ADMIN_TABLES).fetchall():
                insert = sql.SQL("GRANT INSERT ON TABLE {} TO {}")
                _run(conn, insert.format(sql.Identifier(schema, table), me), "grant the loader")
            objects = [int(r[0]) for r in conn.execute(_ADMIN_OBJECTS).fetchall()]
            for start in range(0, len(objects), 1000):
                oids = sql.SQL(", ").join(sql.Literal(o) for o in objects[start : start + 1000])
                query = sql.SQL("GRANT SELECT, UPDATE ON LARGE OBJECT {} TO {}").format(oids, me)
                _run(conn, query, "grant the loader large objects")

    def owned(self, database: str) -> list[str]:
        """What the loader owns in `database` (pg_shdepend's owner entries), described."""
        with self._session(database) as conn:
            rows = conn.execute(
                "SELECT pg_catalog.pg_describe_object(d.classid, d.objid, d.objsubid)"
                " FROM pg_catalog.pg_shdepend d JOIN pg_catalog.pg_database b"
                " ON b.oid = d.dbid AND b.datname = pg_catalog.current_database()"
                " WHERE d.deptype = 'o'"
                " AND d.refclassid = 'pg_catalog.pg_authid'::pg_catalog.regclass"
                " AND d.refobjid = (SELECT r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = %s)"
                " ORDER BY 1",
                (self.name,),
            ).fetchall()
        return [str(r[0]) for r in rows]

    def reassign(self, database: str) -> None:
        """Make pgkeep's own role own what the loader made in `database`."""
        query = sql.SQL("REASSIGN OWNED BY {} TO CURRENT_USER").format(sql.Identifier(self.name))
        try:
            with self._session(database) as conn:
                conn.execute(query)
        except psycopg.Error as exc:
            raise RestoreFailed("cannot take what the loader made", str(exc).strip()) from None

    def drop(self, database: str | None) -> None:
        """Take back what the loader has and may have made (in `database`, when it is still
        there), end its sessions, drop it. Logged, never raised: a leftover is swept at start."""
        try:
            if database is not None:
                with self._session(database) as conn:
                    conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(self.name)))
            with self._session() as conn:
                conn.execute(
                    "SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity"
                    " WHERE usename = %s",
                    (self.name,),
                )
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(self.name)))
        except (psycopg.Error, DatabaseUnavailable) as exc:
            logger.error("could not drop the loader role %s: %s", self.name, exc)

    @contextmanager
    def passfile(self) -> Iterator[tuple[str, int]]:
        """(PGPASSFILE value, the descriptor a child must keep): a private file with no name
        on disk, read by libpq through /dev/fd."""
        where = str(self._tmp_dir) if self._tmp_dir else tempfile.gettempdir()
        fd = os.open(where, os.O_TMPFILE | os.O_RDWR, 0o600)
        try:
            os.write(fd, f"*:*:*:{_escape(self.name)}:{_escape(self._password)}\n".encode())
            os.lseek(fd, 0, os.SEEK_SET)
            yield f"/dev/fd/{fd}", fd
        finally:
            os.close(fd)

    @contextmanager
    def _session(self, database: str | None = None) -> Iterator[psycopg.Connection[Any]]:
        target = self._admin if database is None else self._admin.with_dbname(database)
        with server.connect(target) as conn:
            yield conn


def ensure_group(conn: psycopg.Connection[Any]) -> None:
    """The group every loader is in, for pg_hba to name (`+pgkeep_loaders`)."""
    found = conn.execute("SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = %s", (GROUP,))
    if found.fetchone() is not None:
        return
    with contextlib.suppress(psycopg.errors.DuplicateObject):
        _run(
            conn,
            sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(GROUP)),
            f"create the group role {GROUP}",
        )


def leftovers(conn: psycopg.Connection[Any]) -> list[str]:
    """Loader roles on this server (a crash leaves them)."""
    rows = conn.execute(
        "SELECT rolname FROM pg_catalog.pg_roles WHERE rolname LIKE %s ORDER BY 1",
        (PREFIX.replace("_", r"\_") + "%",),
    ).fetchall()
    return [str(r[0]) for r in rows]


def _run(conn: psycopg.Connection[Any], query: sql.Composed, what: str) -> None:
    try:
        conn.execute(query)
    except psycopg.errors.InsufficientPrivilege as exc:
        raise RestoreFailed(
            f"pgkeep's role may not {what}",
            f"{str(exc).strip()} (docs/operations.md, least privilege)",
        ) from None


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")
