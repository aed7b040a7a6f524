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
import re
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from pgkeep.core.jobs import Control
from pgkeep.core.models import BackupOptions, Compression, DumpFormat
from pgkeep.errors import DumpFailed, PgkeepError
from pgkeep.postgres import catalog, server, tools
from pgkeep.postgres.process import ReadAhead, StderrTail, describe_exit, spawn, widen_pipe
from pgkeep.postgres.target import Target

logger = logging.getLogger(__name__)

CHUNK_SIZE = 1024 * 1024


def dump_argv(
    pg_dump: Path,
    conninfo: str,
    options: BackupOptions | None = None,
    snapshot: str | None = None,
    verbose: bool = False,
) -> list[str]:
    """pg_dump to stdout; the conninfo carries no password, and none is ever prompted for."""
    options = options or BackupOptions()
    argv = [str(pg_dump), f"--format={options.format}", "--no-password"]
    if verbose:
        argv.append("--verbose")  # one stderr line per table: progress
    if options.format is DumpFormat.CUSTOM:
        level = options.effective_level if options.compression is Compression.GZIP else 0
        argv.append(f"--compress={level}")  # custom archives: pg_dump's internal gzip
    if snapshot:
        argv.append(f"--snapshot={snapshot}")
    return [*argv, f"--dbname={conninfo}"]


class PgDumpStream:
    """A running dump: its bytes, the versions involved and, once done, the row counts."""

    def __init__(
        self, chunks: Iterator[bytes], server_version: str, tool_version: str, counter: _Counter
    ) -> None:
        self.chunks = chunks
        self.server_version = server_version
        self.tool_version = tool_version
        self._counter = counter

    def row_counts(self) -> dict[str, int] | None:
        return self._counter.result()


class PgDumper:
    """Dumper for one target: picks a pg_dump that fits the server, then streams its output."""

    def __init__(self, target: Target, bin_dirs: list[Path], count_max_bytes: int = 0) -> None:
        self._target = target
        self._bin_dirs = bin_dirs
        self._count_max_bytes = count_max_bytes

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
        self, options: BackupOptions | None = None, control: Control | None = None
    ) -> Iterator[PgDumpStream]:
        with server.connect(self._target, autocommit=False) as conn:
            found = tools.find_tools("pg_dump", self._bin_dirs)
            tool = tools.choose(found, server.major_of(conn), "pg_dump")
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            snapshot = str(_one(conn, "SELECT pg_export_snapshot()"))
            counter = _Counter(self._target, snapshot, self._count_max_bytes)
            on_line = _expect(conn, control) if control is not None else None
            argv = dump_argv(tool.path, self._target.conninfo, options, snapshot, bool(on_line))
            proc = spawn(
                argv, self._target.child_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE
            )
            assert proc.stdout is not None  # noqa: S101 (PIPE)
            assert proc.stderr is not None  # noqa: S101 (PIPE)
            if control is not None:
                control.on_cancel(proc.kill)
            tail = StderrTail(proc.stderr, on_line)
            widen_pipe(proc.stdout)
            reader = ReadAhead(proc.stdout.fileno(), CHUNK_SIZE)
            try:
                chunks = self._chunks(proc, reader, tail)
                yield PgDumpStream(chunks, server.version_of(conn), tool.version, counter)
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

    def _chunks(
        self, proc: subprocess.Popen[bytes], reader: ReadAhead, tail: StderrTail
    ) -> Iterator[bytes]:
        yield from reader
        code = proc.wait()
        tail.join()
        if code != 0:
            raise DumpFailed(
                f"{describe_exit('pg_dump', code)} on database {self.target!r}",
                self._target.redact(tail.text()),
                exit_code=code,
            )


class _Counter:
    """Counts rows in the dump's snapshot on its own connection and thread, while pg_dump runs.

    Skipped (None) when the database is larger than `max_bytes` (0: never skip).
    """

    def __init__(self, target: Target, snapshot: str, max_bytes: int) -> None:
        self._target = target
        self._snapshot = snapshot
        self._max_bytes = max_bytes
        self._conn: psycopg.Connection[Any] | None = None
        self._counts: dict[str, int] | None = None
        self._cancelled = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            with server.connect(self._target, autocommit=False) as conn:
                self._conn = conn
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                conn.execute(
                    sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(self._snapshot))
                )
                # One backend, not a leader and workers: counting shares the CPU with
                # pg_dump and its backend, and finishing early gains nothing (measured:
                # parallel count(*) used ~1.8x the CPU time of a serial one).
                conn.execute("SET LOCAL max_parallel_workers_per_gather = 0")
                size = catalog.database_size(conn)
                if self._max_bytes and size > self._max_bytes:
                    logger.info("row counts skipped: database is %d bytes", size)
                    return
                self._counts = catalog.row_counts(conn)
                conn.rollback()
        except (psycopg.Error, PgkeepError) as exc:
            level = logging.DEBUG if self._cancelled else logging.WARNING
            logger.log(level, "row counts unavailable: %s", self._target.redact(str(exc).strip()))

    def cancel(self) -> None:
        self._cancelled = True
        if self._conn is not None:
            self._conn.cancel_safe()

    def join(self) -> None:
        self._thread.join()

    def result(self) -> dict[str, int] | None:
        self.join()
        return self._counts


_TABLE_LINE = re.compile(r"dumping contents of table ")


def _expect(conn: psycopg.Connection[Any], control: Control) -> Callable[[str], None]:
    """Tell the control what to expect (tables, heap bytes); return the stderr line counter."""
    # relpages (kept by VACUUM/ANALYZE), not pg_relation_size(): that takes a lock on
    # every table, and would wait behind any exclusive lock before pg_dump even starts.
    row = conn.execute(
        "SELECT count(*), coalesce(sum(c.relpages::bigint), 0) * current_setting('block_size')::int"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
    ).fetchone()
    tables, heap_bytes = (int(row[0]), int(row[1])) if row else (0, 0)
    # Text dumps run close to heap size; plus a floor so tiny databases do not show 99% at once.
    control.expected_bytes = max(heap_bytes, 1_000_000)
    control.report(tables_total=tables)
    done = 0

    def on_line(line: str) -> None:
        nonlocal done
        if _TABLE_LINE.search(line):
            done += 1
            control.report(tables_done=done)

    return on_line


def _one(conn: psycopg.Connection[Any], query: str) -> Any:
    row = conn.execute(query).fetchone()
    return row[0] if row else None
