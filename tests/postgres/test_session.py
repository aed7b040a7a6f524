"""What psql is fed in a restore's run: pgkeep's own fresh `\\restrict` line first, then the
run's bytes as they are (a stand-in psql records its input; no server needed)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

from pgkeep.core.restore_plan import ADMIN
from pgkeep.errors import RestoreFailed
from pgkeep.postgres import loader, tools
from pgkeep.postgres.connection import Connection
from pgkeep.postgres.session import PgSession, _restricted

_RESTRICT = re.compile(rb"\\restrict ([0-9a-f]{32})\n")
DUMP = b"\\restrict K1\nSET client_encoding = 'UTF8';\nCREATE TABLE t (a int);\n\\unrestrict K1\n"


class _Server:
    """A restorer whose psql is a program that appends what it reads to one file per run."""

    def __init__(self, directory: Path) -> None:
        self.runs = directory / "runs"
        self.runs.mkdir()
        psql = directory / "psql"
        psql.write_text(f'#!/bin/sh\ncat > "$(mktemp -p {self.runs})"\n')
        psql.chmod(0o700)
        self._psql = tools.Tool("psql", psql, 18, "18.0")

    @property
    def admin(self) -> Connection:
        return Connection.from_url("postgresql://pgkeep@127.0.0.1:1/postgres")

    @property
    def jobs(self) -> int:
        return 1

    @property
    def tmp_dir(self) -> Path | None:
        return None

    def tool(self, name: str, server_major: int, archive_major: int) -> tools.Tool:
        assert name == "psql"
        return self._psql

    def failed(self, code: int, tail: str, tool: str, database: str) -> RestoreFailed:
        return RestoreFailed(f"{tool} failed with exit code {code}", tail)

    def staged(
        self, chunks: Iterable[bytes], size_hint: int
    ) -> AbstractContextManager[tuple[str, int]]:
        raise AssertionError("a plain dump")

    def loader_for(self, job: str) -> loader.Loader:
        raise AssertionError("admin runs only")

    def superuser(self) -> bool:
        return False

    def privileged(self, role: str, database: str) -> bool:
        return False

    def fed(self) -> list[bytes]:
        return [p.read_bytes() for p in sorted(self.runs.iterdir())]


def _pieces(data: bytes) -> Iterator[bytes]:
    yield from (data[i : i + 10] for i in range(0, len(data), 10))


def test_psql_gets_pgkeeps_own_fresh_restrict_line_first_in_every_run(tmp_path: Path) -> None:
    server = _Server(tmp_path)
    session = PgSession(server, "restored", 18, 18, "0123456789abcdef")
    session.run_sql(ADMIN, _pieces(DUMP))
    session.run_sql(ADMIN, _pieces(DUMP))
    keys = []
    for fed in server.fed():
        opening = _RESTRICT.match(fed)
        assert opening is not None, fed[:40]
        assert fed[opening.end() :] == DUMP  # the run's bytes, nothing lifted or added
        keys.append(opening[1])
    assert len(keys) == 2
    assert keys[0] != keys[1]
    assert b"K1" not in keys


def test_the_guard_line_comes_first_and_is_fresh_each_time() -> None:
    first = list(_restricted(iter([b"SELECT 1;\n", b"SELECT 2;\n"])))
    second = list(_restricted(iter([])))
    assert _RESTRICT.fullmatch(first[0])
    assert first[1:] == [b"SELECT 1;\n", b"SELECT 2;\n"]
    assert _RESTRICT.fullmatch(second[0])
    assert second[0] != first[0]
    assert not any(b"unrestrict" in piece for piece in first + second)
