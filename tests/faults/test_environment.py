"""Faults in the environment, through the API: disk full mid-dump, a read-only backup
directory, pg_dump missing or too old. Each answers a clear error and leaves nothing."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from pgkeep import wiring
from pgkeep.config import Settings
from pgkeep.http.app import create_app
from pgkeep.postgres import server
from pgkeep.postgres.connection import Connection
from pgkeep.postgres.dump import PgDumper
from tests.conftest import backup_files
from tests.disks import fill

pytestmark = pytest.mark.anyio
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


@pytest.fixture
def tiny_mount(backup_dir: Path) -> Iterator[Path]:
    backup_dir.mkdir()
    if (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=128k,mode=0700", "tmpfs", str(backup_dir)],
            capture_output=True,
            check=False,
        ).returncode
        != 0
    ):
        pytest.skip("this sandbox does not allow mounting tmpfs")
    yield backup_dir
    subprocess.run(["umount", str(backup_dir)], check=False)


@needs_root
async def test_disk_full_mid_dump_is_507_and_leaves_nothing(
    make_settings: Callable[..., Settings], auth: dict[str, str], tiny_mount: Path
) -> None:
    # A small earlier backup makes the pre-flight's estimate small: the database
    # has grown since, and the disk fills while dumping.
    earlier = tiny_mount / "backup-2020-01-01T00-00-00.sql"
    earlier.write_text("-- an earlier, smaller backup\n")
    transport = httpx.ASGITransport(
        app=create_app(make_settings(retention_days=0, min_free_bytes=0))
    )
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as api:
        response = await api.post("/api/backup/create", headers=auth)
        listing = (await api.get("/api/backup/list", headers=auth)).json()
        health = await api.get("/healthz")
    assert response.status_code == 507
    body = response.json()
    assert "No space left on device" in body["error"]
    assert body["details"] == "no space left in the backup directory"
    assert [b["filename"] for b in listing["backups"]] == [earlier.name]
    assert backup_files(tiny_mount) == [earlier.name]
    assert health.status_code == 200


@needs_root
async def test_backup_directory_turns_read_only(
    make_settings: Callable[..., Settings],
    auth: dict[str, str],
    tiny_mount: Path,
    tmp_path: Path,
) -> None:
    (tiny_mount / "backup-2020-01-01T00-00-00.sql").write_text("-- small, so the estimate fits")
    # The audit log elsewhere: one in the read-only directory refuses the create first (503).
    settings = make_settings(audit_log=tmp_path / "audit.jsonl", min_free_bytes=0)
    transport = httpx.ASGITransport(app=create_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as api:
        subprocess.run(["mount", "-o", "remount,ro", str(tiny_mount)], check=True)
        try:
            create = await api.post("/api/backup/create", headers=auth)
            ready = await api.get("/readyz")
        finally:
            subprocess.run(["mount", "-o", "remount,rw", str(tiny_mount)], check=True)
    assert create.status_code == 500
    assert create.json()["error"].endswith("Read-only file system")
    assert ready.status_code == 503
    assert "storage" in ready.json()["details"]


async def test_unwritable_backup_dir_stops_the_start(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    from pgkeep.errors import ConfigError

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="PGKEEP_BACKUP_DIR: cannot create backup directory"):
        create_app(make_settings(backup_dir=blocker / "backups"))


@pytest.mark.parametrize("case", ["missing", "too old"])
async def test_pg_dump_missing_or_too_old(
    make_settings: Callable[..., Settings],
    auth: dict[str, str],
    backup_dir: Path,
    pg_bin_dirs: dict[int, Path],
    tmp_path: Path,
    case: str,
) -> None:
    settings = make_settings()
    target = Connection.from_url(settings.require_database_url())
    major = server.server_major(target)
    older = [d for m, d in pg_bin_dirs.items() if m < major]
    if case == "too old" and not older:
        pytest.skip(f"no pg_dump older than PostgreSQL {major} here")
    dirs = [tmp_path] if case == "missing" else older
    runtime = wiring.build(settings)
    runtime.service().creating.dumper = PgDumper(target, dirs)
    transport = httpx.ASGITransport(app=create_app(settings, runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as api:
        response = await api.post("/api/backup/create", headers=auth)
        ready = await api.get("/readyz")
    assert response.status_code == 500
    body = response.json()
    expected = "pg_dump not found" if case == "missing" else "is older than the server"
    assert expected in body["error"]
    assert f"postgresql-client-{major}" in body["details"]
    assert ready.status_code == 503
    assert backup_files(backup_dir) == []


@needs_root
async def test_a_verify_on_a_full_disk_is_answered_not_thrown_away(
    make_settings: Callable[..., Settings], auth: dict[str, str], backup_dir: Path
) -> None:
    """Seen before: a verify whose manifest update found the disk full answered 507 ("cannot
    write backup '….json'") and lost its result. The result is the answer, with a check
    saying it was not recorded."""
    backup_dir.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=64m,mode=0700", "tmpfs", str(backup_dir)]
    if subprocess.run(mount, capture_output=True, check=False).returncode != 0:
        pytest.skip("this sandbox does not allow mounting tmpfs")
    try:
        settings = make_settings(retention_days=0, min_free_bytes=0)
        transport = httpx.ASGITransport(app=create_app(settings))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as api:
            name = (await api.post("/api/backup/create", headers=auth)).json()["filename"]
            fill(backup_dir)
            answer = await api.post(f"/api/backup/{name}/verify", headers=auth)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["verified"] is True
        recorded = [c for c in body["checks"] if c["name"] == "recorded"]
        assert recorded
        assert recorded[0]["ok"] is False
        assert "not written to the manifest" in recorded[0]["details"]
    finally:
        subprocess.run(["umount", str(backup_dir)], check=False)


@needs_root
async def test_a_full_disk_makes_pgkeep_unready_by_default(
    make_settings: Callable[..., Settings], auth: dict[str, str], tiny_mount: Path
) -> None:
    """PGKEEP_MIN_FREE_BYTES defaulted to 0, so /readyz said free space was fine at 0 bytes
    free; the default (64 MiB) catches a full disk (and refuses creates below it)."""
    (tiny_mount / "filler").write_bytes(b"\0" * (100 * 1024))
    transport = httpx.ASGITransport(app=create_app(make_settings()))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as api:
        ready = await api.get("/readyz", headers=auth)
        created = await api.post("/api/backup/create", headers=auth)
    assert ready.status_code == 503
    assert "free_space" in [c["name"] for c in ready.json()["checks"] if not c["ok"]]
    assert created.status_code == 507
    assert "PGKEEP_MIN_FREE_BYTES" in created.json()["error"]
