"""Choosing pg_dump by the server's major version, with the real binaries on this machine."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from pgkeep.errors import DatabaseUnavailable, ToolError
from pgkeep.postgres import server, tools
from pgkeep.postgres.connection import Connection
from pgkeep.postgres.dump import PgDumper
from pgkeep.postgres.tools import Tool
from pgkeep.throwaway.cluster import ThrowawayCluster


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
    assert server.server_major(Connection.from_url(cluster.url())) == expected[0]


def test_pg_dump_too_old_for_the_real_server(
    cluster: ThrowawayCluster, pg_bin_dirs: dict[int, Path]
) -> None:
    server_major = server.server_major(Connection.from_url(cluster.url()))
    older = {m: d for m, d in pg_bin_dirs.items() if m < server_major}
    if not older:
        pytest.skip(f"no pg_dump older than the server ({server_major}) on this machine")
    dumper = PgDumper(Connection.from_url(cluster.url()), list(older.values()))
    with pytest.raises(ToolError) as caught, dumper.dump():
        pass
    assert f"is older than the server (PostgreSQL {server_major})" in caught.value.message
    assert f"postgresql-client-{server_major}" in caught.value.details


def test_unreachable_database_is_named_without_password(cluster: ThrowawayCluster) -> None:
    url = f"postgresql://postgres:hunter2-{cluster.password}@127.0.0.1:1/nowhere"
    with pytest.raises(DatabaseUnavailable) as caught:
        server.server_major(Connection.from_url(url))
    assert caught.value.message == "cannot connect to database 'nowhere' at 127.0.0.1:1"
    assert "hunter2" not in caught.value.details


def _reader(name: str, version: str) -> Tool:
    return Tool(name, Path(f"/opt/pg/{version}/bin/{name}"), int(version.split(".")[0]), version)


@pytest.mark.parametrize(
    ("version", "flagged"),
    [
        ("18.6", True),
        ("18.7", False),
        ("18", True),  # a beta or a development build: before 18.7
        ("17.11", True),
        ("17.12", False),
        ("16.15", True),
        ("16.16", False),
        ("15.19", True),
        ("15.20", False),
        ("19.0", False),
    ],
)
def test_known_cves_of_psql_and_pg_restore_by_version(version: str, flagged: bool) -> None:
    for name in ("psql", "pg_restore"):
        tool = _reader(name, version)
        assert tools.known_cves(tool) == (["CVE-2026-116314"] if flagged else [])
        line = tools.notice(tool)
        assert (line is not None) is flagged
        if line is not None:
            assert line.startswith(f"{name} {version} has known restore-time vulnerabilities")
            assert "/opt/pg" not in line  # logged and shown: never a path
    assert tools.known_cves(_reader("pg_dump", version)) == []  # pg_dump runs no restore


def test_majors_past_upstream_support_are_named_as_such() -> None:
    line = tools.notice(_reader("pg_restore", "14.12"))
    assert line is not None
    assert line.startswith("pg_restore 14.12 is no longer supported upstream")
    assert tools.known_cves(_reader("pg_restore", "14.12")) == []
    assert tools.notice(_reader("pg_dump", "14.12")) is None


@pytest.mark.anyio
async def test_vulnerable_client_tools_are_named_at_start_and_in_readiness(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    cluster: ThrowawayCluster,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Logged once each at start (the app's lifespan), and a detail of a passing check."""
    expected = tools.reader_notices(tools.search_dirs(cluster.bin_dir))
    if not expected:
        pytest.skip("no psql or pg_restore on this machine has a known vulnerability")
    logged = [r.getMessage() for r in caplog.get_records("setup") if r.name == "pgkeep.wiring"]
    assert logged == expected
    assert all(str(cluster.bin_dir) not in line for line in logged)
    ready = await api.get("/readyz", headers=auth)
    assert ready.status_code == 200, ready.text
    [check] = [c for c in ready.json()["checks"] if c["name"] == "client_tools"]
    assert check["ok"] is True
    assert "CVE-2026-116314" in check["details"] or "no longer supported" in check["details"]
    assert check["details"] == "; ".join(expected)
