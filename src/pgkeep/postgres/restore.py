"""Restoring into a database on one server: psql for plain dumps, pg_restore for custom archives.

A restore is a session (`PgRestorer.session`) of runs, each in its own transaction,
each by one of two roles: pgkeep's own (the admin: schema, owners, grants) and a
temporary loader that is no superuser (rows, and CHECK constraints added to rows):
see postgres/loader.py. psql always gets pgkeep's own fresh `\\restrict` key as
its first line and never an `\\unrestrict`, so any psql command in a dump stops
the restore; it runs with ON_ERROR_STOP and --single-transaction. A custom
archive is staged once, in a file with no name (O_TMPFILE, handed to pg_restore
as /dev/fd/N), so nothing staged outlives the process, and pg_restore starts only
after every staged byte was checked.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from psycopg import sql

from pgkeep.core.environment import Offers
from pgkeep.core.models import DroppedForeignKey
from pgkeep.errors import (
    Conflict,
    RestoreFailed,
)
from pgkeep.postgres import archives, catalog, loader, privileges, server, tools, trimming
from pgkeep.postgres.connection import Connection
from pgkeep.postgres.process import child_env, describe_exit, run
from pgkeep.postgres.session import PgSession

logger = logging.getLogger(__name__)
STAGING_MARGIN = 64 * 1024 * 1024  # left free beside a staged archive
LOADER_LIFETIME = timedelta(hours=24)
_TOC_LINE = re.compile(rb"^(\d+); \d+ \d+ (.*)$", re.MULTILINE)


class PgRestorer:
    """Creates, loads, counts and drops databases on the server `admin` connects to."""

    def __init__(
        self, admin: Connection, bin_dirs: list[Path], *, jobs: int = 1, tmp_dir: Path | None = None
    ) -> None:
        self._admin = admin
        self._bin_dirs = bin_dirs
        self._jobs = jobs
        self._tmp_dir = tmp_dir
        self._archives = archives.PgArchives(bin_dirs, tmp_dir)

    @property
    def server(self) -> str:
        return self._admin.address

    def exists(self, database: str) -> bool:
        with server.connect(self._admin) as conn:
            row = conn.execute(
                "SELECT 1 FROM pg_catalog.pg_database WHERE datname = %s", (database,)
            )
            return row.fetchone() is not None

    def create(self, database: str, owner: str = "") -> None:
        """A new database, owned by `owner` when that role exists here (as its source was: in
        PostgreSQL 16 and newer a table's owner needs CREATE on its schema, which `public`
        gives its database's owner)."""
        query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database))
        if owner and self._role_exists(owner):
            query += sql.SQL(" OWNER {}").format(sql.Identifier(owner))
        self._admin_sql(query, database)

    def _role_exists(self, role: str) -> bool:
        with server.connect(self._admin) as conn:
            found = conn.execute("SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = %s", (role,))
            return found.fetchone() is not None

    def drop(self, database: str) -> None:
        query = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
        self._admin_sql(query, database)

    def rename(self, old: str, new: str) -> None:
        query = sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
            sql.Identifier(old), sql.Identifier(new)
        )
        self._admin_sql(query, new)

    def give(self, database: str, owner: str) -> bool:
        """Make `owner` the database's owner, as it was at the source; False when there is no
        such role here (the database then stays pgkeep's)."""
        if not self._role_exists(owner):
            return False
        query = sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
            sql.Identifier(database), sql.Identifier(owner)
        )
        self._admin_sql(query, database)
        return True

    def databases(self, prefix: str) -> list[str]:
        """Databases named `prefix…` (pgkeep's own scratch and staging)."""
        pattern = prefix.replace("_", r"\_") + "%"
        with server.connect(self._admin) as conn:
            rows = conn.execute(
                "SELECT datname FROM pg_catalog.pg_database WHERE datname LIKE %s", (pattern,)
            ).fetchall()
        return [str(r[0]) for r in rows]

    def loaders(self) -> list[str]:
        """Loader roles on this server (each named after its job)."""
        with server.connect(self._admin) as conn:
            return loader.leftovers(conn)

    def drop_loader(self, role: str) -> None:
        loader.Loader(self._admin, role.removeprefix(loader.PREFIX), 1, self._tmp_dir).drop(None)

    def row_counts(self, database: str) -> dict[str, int]:
        with server.connect(self._admin.with_dbname(database)) as conn:
            return catalog.row_counts(conn)

    def trim(
        self, database: str, tables: frozenset[str], schemas: tuple[str, ...]
    ) -> list[DroppedForeignKey]:
        """Keep `tables`, `schemas`' objects and what they need; drop the rest
        (postgres/trimming.py); the foreign keys dropped."""
        try:
            with server.connect(self._admin.with_dbname(database)) as conn:
                return trimming.trim(conn, tables, schemas)
        except psycopg.Error as exc:
            raise RestoreFailed(
                f"cannot keep only the chosen tables in database {database!r}",
                self._admin.redact(str(exc).strip()),
            ) from None

    @contextmanager
    def session(
        self, database: str, archive_major: int, job: str, bare: bool = False
    ) -> Iterator[PgSession]:
        """Runs into `database` (existing, empty); the loader is made when first needed and
        dropped, with what it made, when the session ends (`bare`, a rehearsal: what it
        made is pgkeep's role's first, as with pg_restore --no-owner)."""
        major = server.server_major(self._admin)
        session = PgSession(self, database, archive_major, major, job, bare)
        try:
            yield session
            if bare:
                session.adopt()
            else:
                session.check_given()
        finally:
            session.close()

    def offers(self, roles: Iterable[str]) -> Offers:
        """This server's major, the extensions it can install, which of `roles` exist."""
        with server.connect(self._admin) as conn:
            return catalog.offers(conn, self.server, roles)

    def loader_for(self, job: str) -> loader.Loader:
        """A loader role for the job (made by its `create`)."""
        return loader.Loader(self._admin, job, self._jobs + 2, self._tmp_dir)

    def check_archive(self, archive_major: int, chunks: Iterable[bytes], size_hint: int = 0) -> str:
        """Read a custom archive end to end with pg_restore (its TOC, then every data block)."""
        return self._archives.check(archive_major, chunks, size_hint)

    def check_import(self, chunks: Iterable[bytes], size_hint: int) -> None:
        """Check what an imported custom archive would run in pgkeep's own session."""
        self._archives.check_import(chunks, size_hint)

    def staged(
        self, chunks: Iterable[bytes], size_hint: int
    ) -> AbstractContextManager[tuple[str, int]]:
        return self._archives.staged(chunks, size_hint)

    def sweep_staged(self) -> list[str]:
        return self._archives.sweep()

    def check_loader(self) -> str:
        """A loader can be made here and can log in (pg_hba): what was found, or RestoreFailed
        naming the privilege or the pg_hba line that is missing."""
        missing = privileges.restore_notes(self._admin)
        if missing:
            raise RestoreFailed(
                f"pgkeep's role on {self.server} lacks {', '.join(missing)}",
                "docs/operations.md, least privilege",
            )
        probe = loader.Loader(self._admin, secrets.token_hex(6), 1, self._tmp_dir)
        probe.create(datetime.now(UTC) + timedelta(minutes=5))
        try:
            psql = self.tool("psql", 0, 0)
            with probe.passfile() as (passfile, fd):
                env = child_env(PGPASSFILE=passfile)
                argv = [str(psql.path), "-X", "-q", "--no-password", "-c", "SELECT 1"]
                code, tail = run([*argv, f"--dbname={probe.conninfo('postgres')}"], env, (fd,))
            if code != 0:
                raise RestoreFailed(
                    f"a loader role cannot log in to {self.server}",
                    f"{tail.strip()[-300:]}; add to pg_hba.conf, before other lines for this "
                    f"address: host all +{loader.GROUP} <pgkeep's address>/32 scram-sha-256",
                )
        finally:
            probe.drop(None)
        return f"loader roles can be made and log in ({loader.GROUP})"

    def superuser(self) -> bool:
        with server.connect(self._admin) as conn:
            row = conn.execute(
                "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user"
            ).fetchone()
        return bool(row and row[0])

    def privileged(self, role: str, database: str) -> bool:
        """Whether `role` is a superuser here or pgkeep's own role (`pg_database_owner`: when
        `database`'s owner is); a predefined role, or one missing, is not."""
        with server.connect(self._admin) as conn:
            row = conn.execute(
                "SELECT r.rolsuper OR r.rolname = current_user FROM pg_catalog.pg_roles r"
                " WHERE r.rolname = CASE WHEN %(role)s = 'pg_database_owner' THEN"
                " (SELECT pg_catalog.pg_get_userbyid(d.datdba) FROM pg_catalog.pg_database d"
                " WHERE d.datname = %(database)s) ELSE %(role)s END",
                {"role": role, "database": database},
            ).fetchone()
        return bool(row and row[0])

    def tool(self, name: str, server_major: int, archive_major: int) -> tools.Tool:
        return tools.choose_reader(
            tools.find_tools(name, self._bin_dirs), server_major, archive_major, name
        )

    def failed(self, code: int, tail: str, tool: str, database: str) -> RestoreFailed:
        return RestoreFailed(
            f"{describe_exit(tool, code)} restoring into database {database!r}",
            self._admin.redact(tail),
            exit_code=code,
        )

    @property
    def admin(self) -> Connection:
        return self._admin

    @property
    def jobs(self) -> int:
        return self._jobs

    @property
    def tmp_dir(self) -> Path | None:
        return self._tmp_dir

    def _admin_sql(self, query: sql.Composed, database: str) -> None:
        try:
            with server.connect(self._admin) as conn:
                conn.execute(query)
        except psycopg.errors.DuplicateDatabase as exc:
            raise Conflict(f"database {database!r} already exists") from exc
        except psycopg.Error as exc:
            raise RestoreFailed(
                f"cannot change database {database!r} on {self.server}",
                self._admin.redact(str(exc).strip()),
            ) from None
