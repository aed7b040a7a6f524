"""pg_dump: the argv (pure) and the runner that streams its stdout and maps its failures.

Each dump runs inside a REPEATABLE READ transaction that exports its snapshot;
pg_dump dumps that snapshot (`--snapshot`) while a second connection imports it
and counts every table's rows on a thread, so the manifest's counts match the
dump exactly. Counting has its own connection because an error there (say, a
table it may not read) would abort the exporting transaction and with it the
snapshot pg_dump is importing.
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

from pgkeep.core import pipeline
from pgkeep.core.control import Control
from pgkeep.core.models import BackupOptions, DumpFormat, SourceFacts
from pgkeep.errors import DumpFailed
from pgkeep.postgres import catalog, rows, server, tools
from pgkeep.postgres.connection import Connection
from pgkeep.postgres.messages import cause_first
from pgkeep.postgres.process import (
    ReadAhead,
    StderrTail,
    describe_exit,
    piped_output,
    spawn,
    widen_pipe,
)

logger = logging.getLogger(__name__)

CHUNK_SIZE = 1024 * 1024


def dump_argv(
    pg_dump: Path,
    conninfo: str,
    options: BackupOptions | None = None,
    snapshot: str | None = None,
    verbose: bool = False,
    restrict_key: str | None = None,
    lock_wait_seconds: int = 300,
) -> list[str]:
    """pg_dump to stdout; the conninfo carries no password, and none is ever prompted for.

    `--lock-wait-timeout`: a table someone holds locked fails the dump after a while
    instead of holding its slot for ever.
    """
    options = options or BackupOptions()
    argv = [
        str(pg_dump),
        f"--format={options.format}",
        "--no-password",
        f"--lock-wait-timeout={lock_wait_seconds}s",
    ]
    if verbose:
        argv.append("--verbose")  # one stderr line per table: progress
    if options.format is DumpFormat.CUSTOM:
        argv.append(f"--compress={pipeline.tool_level(options)}")  # pg_dump's internal gzip
    elif restrict_key:
        argv.append(f"--restrict-key={restrict_key}")
    if snapshot:
        argv.append(f"--snapshot={snapshot}")
    return [*argv, f"--dbname={conninfo}"]


class PgDumpStream:
    """A running dump: its bytes, the versions involved and, once done, the row counts."""

    def __init__(
        self,
        chunks: Iterator[bytes],
        server_version: str,
        tool_version: str,
        counter: rows.RowCounter,
        restrict_key: str | None,
        facts: SourceFacts,
    ) -> None:
        self.chunks = chunks
        self.server_version = server_version
        self.tool_version = tool_version
        self.restrict_key = restrict_key
        self.flags: tuple[str, ...] = ()
        self.facts = facts
        self._counter = counter

    def row_counts(self) -> dict[str, int] | None:
        return self._counter.result()


class PgDumper:
    """Dumper for one target: picks a pg_dump that fits the server, then streams its output."""

    kind = "database"

    def __init__(
        self,
        target: Connection,
        bin_dirs: list[Path],
        count_max_bytes: int = 0,
        lock_wait_seconds: int = 300,
    ) -> None:
        self._target = target
        self._bin_dirs = bin_dirs
        self._count_max_bytes = count_max_bytes
        self._lock_wait = lock_wait_seconds

    @property
    def target(self) -> str:
        return self._target.dbname

    def database_size(self) -> int:
        with server.connect(self._target) as conn:
            return catalog.database_size(conn)

    def check(self) -> str:
        with server.connect(self._target) as conn:
            major = server.major_of(conn)
        tool = tools.choose(tools.find_tools("pg_dump", self._bin_dirs), major, "pg_dump")
        return f"PostgreSQL {major} reachable; pg_dump {tool.version} at {tool.path}"

    @contextmanager
    def dump(
        self,
        options: BackupOptions | None = None,
        control: Control | None = None,
        restrict_key: str = "",
    ) -> Iterator[PgDumpStream]:
        options = options or BackupOptions()
        with server.connect(self._target, autocommit=False) as conn:
            found = tools.find_tools("pg_dump", self._bin_dirs)
            tool = tools.choose(found, server.major_of(conn), "pg_dump")
            plain = options.format is DumpFormat.PLAIN
            key = (
                restrict_key if plain and restrict_key and tools.writes_restrict_key(tool) else None
            )
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            snapshot = str(_one(conn, "SELECT pg_export_snapshot()"))
            on_line = rows.expect(conn, control) if control is not None else None
            facts = catalog.source_facts(conn)
            size = catalog.database_size(conn)
            counter: rows.RowCounter = (
                rows.InlineCounter(conn, self._count_max_bytes, size)
                if size <= rows.INLINE_COUNT_BYTES
                else rows.Counter(self._target, snapshot, self._count_max_bytes)
            )
            argv = dump_argv(
                tool.path,
                self._target.conninfo,
                options,
                snapshot,
                bool(on_line),
                key,
                self._lock_wait,
            )
            proc = spawn(
                argv,
                self._target.child_env(server.major_of(conn)),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
            )
            assert proc.stdout is not None  # noqa: S101 (PIPE)
            assert proc.stderr is not None  # noqa: S101 (PIPE)
            if control is not None:
                control.on_cancel(proc.kill)
            tail = StderrTail(proc.stderr, on_line)
            widen_pipe(proc.stdout)
            reader = ReadAhead(proc.stdout.fileno(), CHUNK_SIZE)
            try:
                chunks = piped_output(proc, reader, tail, self._failed(tail))
                version = server.version_of(conn)
                yield PgDumpStream(chunks, version, tool.version, counter, key, facts)
            finally:
                if proc.poll() is None:
                    proc.kill()  # the consumer stopped early: end pg_dump, leave nothing running
                if proc.wait() != 0:
                    counter.cancel()  # no use counting rows for a dump that failed
                reader.close()
                proc.stdout.close()
                tail.join()
                counter.join()
                # Ends the snapshot. If the server died mid-dump this fails too; pg_dump's
                # own error (already raised) is the one to report, so this one is dropped.
                with contextlib.suppress(psycopg.Error):
                    conn.rollback()

    def _failed(self, tail: StderrTail) -> Callable[[int], DumpFailed]:
        def failed(code: int) -> DumpFailed:
            cause, details = cause_first(self._target.redact(tail.text()))
            said = f": {cause}" if cause else ""
            return DumpFailed(
                f"{describe_exit('pg_dump', code)} on database {self.target!r}{said}",
                details,
                exit_code=code,
            )

        return failed


def _one(conn: psycopg.Connection[Any], query: str) -> Any:
    row = conn.execute(query).fetchone()
    return row[0] if row else None
