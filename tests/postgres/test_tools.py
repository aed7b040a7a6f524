"""Choosing pg_dump by the server's major version, with the real binaries on this machine."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgkeep.errors import DatabaseUnavailable, ToolError
from pgkeep.postgres import server, tools
from pgkeep.postgres.cluster import ThrowawayCluster
from pgkeep.postgres.dump import PgDumper
from pgkeep.postgres.target import Target


def _tool(major: int, where: str = "/x") -> tools.Tool:
    return tools.Tool("pg_dump", Path(f"{where}/{major}/pg_dump"), major, f"{major}.1")


def test_choose_prefers_same_major_then_newest_newer() -> None:
    candidates = [_tool(18), _tool(16), _tool(17), _tool(19)]
    assert tools.choose(candidates, 17, "pg_dump").major == 17
    assert tools.choose(candidates, 15, "pg_dump").major == 19
    first = tools.choose([_tool(16, "/a"), _tool(16, "/b")], 16, "pg_dump")
    assert str(first.path).startswith("/a")  # search order breaks ties


def test_choose_too_old_names_both_versions_and_what_to_install() -> None:
    with pytest.raises(ToolError) as caught:
        tools.choose([_tool(15), _tool(16)], 18, "pg_dump")
    assert "pg_dump 16.1" in caught.value.message
    assert "PostgreSQL 18" in caught.value.message
    assert "postgresql-client-18" in caught.value.details
    assert "PGKEEP_PG_BIN_DIR" in caught.value.details


def test_choose_none_installed() -> None:
    with pytest.raises(ToolError, match="pg_dump not found for PostgreSQL 18"):
        tools.choose([], 18, "pg_dump")


def test_find_tools_reads_real_versions(pg_bin_dirs: dict[int, Path]) -> None:
    found = tools.find_tools("pg_dump", list(pg_bin_dirs.values()))
    assert sorted(t.major for t in found) == sorted(pg_bin_dirs)


def test_search_dirs_puts_pg_bin_dir_first(tmp_path: Path) -> None:
    dirs = tools.search_dirs(tmp_path)
    assert dirs[0] == tmp_path
    assert all(d != tmp_path for d in dirs[1:])


def test_server_major_of_the_real_server(cluster: ThrowawayCluster) -> None:
    expected = tools.tool_version(str(cluster.bin_dir / "postgres"))
    assert expected is not None
    assert server.server_major(Target.from_url(cluster.url())) == expected[0]


def test_pg_dump_too_old_for_the_real_server(
    cluster: ThrowawayCluster, pg_bin_dirs: dict[int, Path]
) -> None:
    server_major = server.server_major(Target.from_url(cluster.url()))
    older = {m: d for m, d in pg_bin_dirs.items() if m < server_major}
    if not older:
        pytest.skip(f"no pg_dump older than the server ({server_major}) on this machine")
    dumper = PgDumper(Target.from_url(cluster.url()), list(older.values()))
    with pytest.raises(ToolError) as caught, dumper.dump():
        pass
    assert f"is older than the server (PostgreSQL {server_major})" in caught.value.message
    assert f"postgresql-client-{server_major}" in caught.value.details


def test_unreachable_database_is_named_without_password(cluster: ThrowawayCluster) -> None:
    url = f"postgresql://postgres:hunter2-{cluster.password}@127.0.0.1:1/nowhere"
    with pytest.raises(DatabaseUnavailable) as caught:
        server.server_major(Target.from_url(url))
    assert caught.value.message == "cannot connect to database 'nowhere' at 127.0.0.1:1"
    assert "hunter2" not in caught.value.details
