"""One restore's runs into one database (PgRestorer.session): psql and pg_restore, each run
as the admin (pgkeep's own role) or as the loader (postgres/loader.py), each in its
own transaction.

psql always gets pgkeep's own fresh `\\restrict` key as its first line and never an
`\\unrestrict`, so any psql command in a dump stops the restore. A custom archive is
staged once (`archive`): its schema sections are printed by pg_restore into files with
no name and run as a plain dump's (core/loading.py plans them), its rows restored by
pg_restore as the loader (`--use-list`: large objects' metadata and sequence values
as the admin). An OWNER run is the admin's only when its owner is a superuser here
(`resolve`). In the admin's runs, when it is a superuser, event triggers and ordinary
triggers do not fire (session_replication_role = replica).
"""

from __future__ import annotations

import os
import re
import secrets
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from pgkeep.core import restore_plan
from pgkeep.errors import Corrupt, PgkeepError, RestoreFailed
from pgkeep.postgres import loader, tools
from pgkeep.postgres.connection import Connection
from pgkeep.postgres.process import child_env, run, run_feeding, run_output, session_options


class Server(Protocol):
    """What a session needs of its server (postgres/restore.py PgRestorer)."""

    @property
    def admin(self) -> Connection: ...

    @property
    def jobs(self) -> int: ...

    @property
    def tmp_dir(self) -> Path | None: ...

    def tool(self, name: str, server_major: int, archive_major: int) -> tools.Tool: ...

    def failed(self, code: int, tail: str, tool: str, database: str) -> RestoreFailed: ...

    def staged(
        self, chunks: Iterable[bytes], size_hint: int
    ) -> AbstractContextManager[tuple[str, int]]: ...

    def loader_for(self, job: str) -> loader.Loader: ...

    def superuser(self) -> bool: ...

    def privileged(self, role: str, database: str) -> bool: ...


LOADER_LIFETIME = timedelta(hours=24)
_TOC_LINE = re.compile(rb"^(\d+); \d+ \d+ (.*)$", re.MULTILINE)


class PgSession:
    """One restore's runs into one database (see PgRestorer.session)."""

    def __init__(
        self,
        restorer: Server,
        database: str,
        archive_major: int,
        major: int,
        job: str,
        bare: bool = False,
    ) -> None:
        self.bare = bare
        self._restorer = restorer
        self._database = database
        self._archive_major = archive_major
        self._major = major
        self._job = job
        self._loaders: dict[str, loader.Loader] = {}  # one per owner: its code, its rights
        self._replica: bool | None = None
        self._resolved: dict[str, str] = {}

    def resolve(self, owner: str) -> str:
        """ADMIN when `owner` is a superuser here or pgkeep's own role (their code would run
        with those rights anyway), else LOADER (a predefined or missing role too)."""
        if owner not in self._resolved:
            privileged = self._restorer.privileged(owner, self._database)
            self._resolved[owner] = restore_plan.ADMIN if privileged else restore_plan.LOADER
        return self._resolved[owner]

    def run_sql(self, role: str, chunks: Iterable[bytes], owner: str = "") -> None:
        """Feed psql, as the admin or `owner`'s loader, a part of a plain dump."""
        psql = self._restorer.tool("psql", self._major, self._archive_major)
        argv = [
            str(psql.path),
            "-X",
            "-q",
            "--no-password",
            "-v",
            "ON_ERROR_STOP=1",
            "-v",
            "VERBOSITY=verbose",  # errors carry their SQLSTATE (core/environment.py reads it)
            "--single-transaction",
            "-f",
            "-",
        ]
        guarded = _restricted(chunks)
        with self._as(role, owner) as (conninfo, env, fds):
            code, tail = run_feeding([*argv, f"--dbname={conninfo}"], env, guarded, fds)
        if code != 0:
            raise self._restorer.failed(code, tail, "psql", self._database)

    @contextmanager
    def archive(
        self, chunks: Iterable[bytes], size_hint: int, imported: bool = False
    ) -> Iterator[StagedArchive]:
        """A custom archive staged once (decrypted plaintext in a file with no name)."""
        pg_restore = self._restorer.tool("pg_restore", self._major, self._archive_major)
        with self._restorer.staged(chunks, size_hint) as (path, fd):
            yield StagedArchive(self, pg_restore, path, fd, imported)

    @property
    def tmp_dir(self) -> Path | None:
        return self._restorer.tmp_dir

    def check_given(self) -> None:
        """RestoreFailed naming what the loader still owns (an entry whose owner the dump never
        named): dropping the loader would drop it."""
        for made in self._loaders.values():
            left = made.owned(self._database)
            if left:
                raise RestoreFailed(
                    f"{len(left)} restored objects have no owner from the dump",
                    "the loader made them and nothing gave them to their owner: "
                    + ", ".join(left[:5]),
                )

    def adopt(self) -> None:
        """Give what the loaders made to pgkeep's own role (a rehearsal's: no owners)."""
        for made in self._loaders.values():
            made.reassign(self._database)

    def close(self) -> None:
        for made in self._loaders.values():
            made.drop(self._database)

    def pg_restore(
        self,
        pg_restore: tools.Tool,
        role: str,
        lines: list[bytes],
        path: str,
        fd: int,
        owner: str = "",
    ) -> None:
        parallel = role == restore_plan.LOADER and self._restorer.jobs > 1
        mode = ["--jobs", str(self._restorer.jobs)] if parallel else ["--single-transaction"]
        with _private(self._restorer.tmp_dir) as listing:
            os.write(listing, b"\n".join(lines) + b"\n")
            with self._as(role, owner) as (conninfo, env, fds):
                argv = [
                    str(pg_restore.path),
                    "--exit-on-error",
                    "--no-password",
                    *mode,
                    f"--use-list=/dev/fd/{listing}",
                    f"--dbname={conninfo}",
                    path,
                ]
                code, tail = run(argv, env, (fd, listing, *fds))
        if code != 0:
            raise self._restorer.failed(code, tail, "pg_restore", self._database)

    @contextmanager
    def _as(
        self, role: str, owner: str = ""
    ) -> Iterator[tuple[str, dict[str, str], tuple[int, ...]]]:
        """(conninfo, environment, descriptors to pass) for a child acting as `role` (the
        loader: `owner`'s, a member of that role only)."""
        if role == restore_plan.ADMIN:
            target = self._restorer.admin.with_dbname(self._database)
            env = target.child_env(self._major)
            if self._replicating():
                # Event triggers and ordinary triggers do not fire in the admin's runs.
                options = env.get("PGOPTIONS", "") + " -c session_replication_role=replica"
                env["PGOPTIONS"] = options.strip()
            yield target.conninfo, env, ()
            return
        if role != restore_plan.LOADER:
            raise ValueError(f"no such role {role!r}")
        owner = "" if self.bare else owner  # a rehearsal gives no owners: a member of none
        made = self._loader_ready(owner)
        made.grant(self._database, owner)
        checks = session_options(self._major)
        with made.passfile() as (passfile, fd):
            env = child_env(PGPASSFILE=passfile)
            if checks:
                env["PGOPTIONS"] = checks
            yield made.conninfo(self._database), env, (fd,)

    def _loader_ready(self, owner: str) -> loader.Loader:
        """`owner`'s loader: one role per owner, so one owner's code never has another's
        rights (the first is named after the job, the others `<n>_<job>`)."""
        if owner not in self._loaders:
            n = len(self._loaders)
            made = self._restorer.loader_for(f"{n}_{self._job}" if n else self._job)
            made.create(datetime.now(UTC) + LOADER_LIFETIME)
            self._loaders[owner] = made
        return self._loaders[owner]

    def _replicating(self) -> bool:
        if self._replica is None:
            try:
                self._replica = self._restorer.superuser()
            except PgkeepError:
                self._replica = False
        return self._replica


class StagedArchive:
    """A staged custom archive: its schema printed section by section, its rows restored."""

    def __init__(
        self, session: PgSession, pg_restore: tools.Tool, path: str, fd: int, imported: bool
    ) -> None:
        self._session = session
        self._pg_restore = pg_restore
        self._path = path
        self._fd = fd
        self._imported = imported

    @contextmanager
    def printed(self, section: str) -> Iterator[Callable[[], Iterator[bytes]]]:
        """A schema section as pg_restore would run it (SQL in a file with no name); yields
        a function that reads it from the start, as often as asked."""
        with _private(self._session.tmp_dir) as out:
            argv = [
                str(self._pg_restore.path),
                f"--section={section}",
                f"--file=/dev/fd/{out}",
                self._path,
            ]
            code, tail = run(argv, child_env(), (self._fd, out))
            if code != 0:
                raise Corrupt(f"pg_restore cannot print the archive's {section} section", tail)

            def read() -> Iterator[bytes]:
                at = 0
                while piece := os.pread(out, 1 << 20, at):
                    at += len(piece)
                    yield piece

            yield read

    def load_data(self) -> None:
        """The archive's rows, each owner's by its loader (large objects' metadata and
        sequence values, as the admin, first; an import's all by one loader)."""
        argv = [str(self._pg_restore.path), "--list", "--section=data", self._path]
        code, out, tail = run_output(argv, child_env(), (self._fd,))
        if code != 0:
            raise Corrupt("pg_restore cannot read the archive's table of contents", tail)
        parts: dict[tuple[str, str], list[bytes]] = {}
        for match in _TOC_LINE.finditer(out):
            entry = match[2].decode("utf-8", "replace")
            who = restore_plan.archive_role("data", entry, self._imported)
            parts.setdefault(who, []).append(match[0])
        for (role, owner), lines in sorted(parts.items(), key=lambda p: p[0][0] != "admin"):
            self._session.pg_restore(self._pg_restore, role, lines, self._path, self._fd, owner)


@contextmanager
def _private(where: Path | None) -> Iterator[int]:
    """A private file with no name (O_TMPFILE), open for reading and writing."""
    fd = os.open(where or tempfile.gettempdir(), os.O_TMPFILE | os.O_RDWR, 0o600)
    try:
        yield fd
    finally:
        os.close(fd)


def _restricted(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """pgkeep's own fresh `\\restrict` first, never lifted: psql refuses every command after."""
    yield b"\\restrict " + secrets.token_hex(16).encode() + b"\n"
    yield from chunks
