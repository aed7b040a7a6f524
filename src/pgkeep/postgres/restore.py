"""Restoring into a database on one server: psql for plain dumps, pg_restore for custom archives.

Plain dumps are fed to `psql -v ON_ERROR_STOP=1 --single-transaction` on stdin,
so a failure anywhere commits nothing (psql without ON_ERROR_STOP "succeeds"
after errors). Custom archives are staged to a temporary file, because
pg_restore needs a seekable file for out-of-order and parallel restores.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql

from pgkeep.core.models import DumpFormat
from pgkeep.core.ports import Opener
from pgkeep.errors import Conflict, Corrupt, InsufficientStorage, RestoreFailed, StorageError
from pgkeep.postgres import catalog, server, tools
from pgkeep.postgres.process import child_env, describe_exit, run, run_feeding
from pgkeep.postgres.target import Target

logger = logging.getLogger(__name__)
STAGING_MARGIN = 64 * 1024 * 1024  # left free beside a staged archive


class PgRestorer:
    """Creates, loads, counts and drops databases on the server `admin` connects to."""

    def __init__(
        self, admin: Target, bin_dirs: list[Path], *, jobs: int = 1, tmp_dir: Path | None = None
    ) -> None:
        self._admin = admin
        self._bin_dirs = bin_dirs
        self._jobs = jobs
        self._tmp_dir = tmp_dir

    @property
    def server(self) -> str:
        return self._admin.address

    def exists(self, database: str) -> bool:
        with server.connect(self._admin) as conn:
            row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
            return row.fetchone() is not None

    def create(self, database: str) -> None:
        self._admin_sql(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)), database)

    def drop(self, database: str) -> None:
        query = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
        self._admin_sql(query, database)

    def rename(self, old: str, new: str) -> None:
        query = sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
            sql.Identifier(old), sql.Identifier(new)
        )
        self._admin_sql(query, new)

    def sweep(self, prefix: str) -> list[str]:
        """Drop every database named `prefix…` (pgkeep's own scratch and staging)."""
        pattern = prefix.replace("_", r"\_") + "%"
        with server.connect(self._admin) as conn:
            rows = conn.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s", (pattern,)
            ).fetchall()
        names = [str(r[0]) for r in rows]
        for name in names:
            self.drop(name)
        return names

    def row_counts(self, database: str) -> dict[str, int]:
        with server.connect(self._admin.with_dbname(database)) as conn:
            return catalog.row_counts(conn)

    def load(
        self,
        database: str,
        fmt: DumpFormat,
        archive_major: int,
        open_chunks: Opener,
        size_hint: int = 0,
    ) -> None:
        """Restore into an existing, empty database; RestoreFailed with the tool's stderr tail."""
        target = self._admin.with_dbname(database)
        major = server.server_major(self._admin)
        if fmt is DumpFormat.PLAIN:
            psql = self._tool("psql", major, archive_major)
            argv = [
                str(psql.path),
                "-X",
                "-q",
                "--no-password",
                "-v",
                "ON_ERROR_STOP=1",
                "--single-transaction",
                "-f",
                "-",
                f"--dbname={target.conninfo}",
            ]
            code, tail = run_feeding(argv, target.child_env(), open_chunks())
            self._raise_for(code, tail, "psql", database)
            return
        pg_restore = self._tool("pg_restore", major, archive_major)
        parallel = ["--jobs", str(self._jobs)] if self._jobs > 1 else ["--single-transaction"]
        with self._staged(open_chunks, size_hint) as path:
            argv = [
                str(pg_restore.path),
                "--exit-on-error",
                "--no-password",
                *parallel,
                f"--dbname={target.conninfo}",
                str(path),
            ]
            code, tail = run(argv, target.child_env())
        self._raise_for(code, tail, "pg_restore", database)

    def check_archive(self, archive_major: int, open_chunks: Opener, size_hint: int = 0) -> str:
        """Read a custom archive end to end with pg_restore (its TOC, then every data block)."""
        pg_restore = self._tool("pg_restore", archive_major, archive_major)
        env = child_env()
        with self._staged(open_chunks, size_hint) as path:
            code, tail = run([str(pg_restore.path), "--list", str(path)], env)
            if code != 0:
                raise Corrupt("pg_restore cannot read the archive's table of contents", tail)
            code, tail = run([str(pg_restore.path), "--file=/dev/null", str(path)], env)
            if code != 0:
                raise Corrupt("pg_restore cannot read the archive's data", tail)
        return f"read end to end by pg_restore {pg_restore.version}"

    def _tool(self, name: str, server_major: int, archive_major: int) -> tools.Tool:
        return tools.choose_reader(
            tools.find_tools(name, self._bin_dirs), server_major, archive_major, name
        )

    def _raise_for(self, code: int, tail: str, tool: str, database: str) -> None:
        if code != 0:
            raise RestoreFailed(
                f"{describe_exit(tool, code)} restoring into database {database!r}",
                self._admin.redact(tail),
                exit_code=code,
            )

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

    @contextmanager
    def _staged(self, open_chunks: Opener, size_hint: int) -> Iterator[Path]:
        """The archive's bytes (decrypted, when the backup is encrypted) in a private (0600)
        temporary file, removed afterwards whatever happens; refused first when the
        staging directory has no room for `size_hint` bytes."""
        where = self._tmp_dir or Path(tempfile.gettempdir())
        try:
            free = shutil.disk_usage(where).free
        except OSError as exc:
            raise StorageError(f"cannot stage archive in {str(where)!r}: {exc.strerror}") from exc
        if size_hint and free < size_hint + STAGING_MARGIN:
            raise InsufficientStorage(
                f"not enough space in {str(where)!r} (PGKEEP_TMP_DIR) to stage the archive: "
                f"{free} bytes free, {size_hint} needed",
                "free space there, or point PGKEEP_TMP_DIR at a larger disk",
            )
        try:
            handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 (closed below)
                prefix="pgkeep-archive-", dir=self._tmp_dir, delete=False
            )
        except OSError as exc:
            raise StorageError(f"cannot stage archive in a temporary file: {exc.strerror}") from exc
        path = Path(handle.name)
        try:
            with handle:
                for chunk in open_chunks():
                    handle.write(chunk)
            yield path
        except OSError as exc:
            raise StorageError(f"cannot stage archive: {exc.strerror}") from exc
        finally:
            path.unlink(missing_ok=True)
