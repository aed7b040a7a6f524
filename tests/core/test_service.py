"""The backup service with the real pg_dump against the real server."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import stat
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pgkeep.core.service import BackupService
from pgkeep.errors import Conflict, DumpFailed
from pgkeep.postgres.cluster import ThrowawayCluster
from pgkeep.postgres.dump import PgDumper
from pgkeep.postgres.target import Target
from pgkeep.storage import LocalStorage, MemoryStorage
from tests.blocking import pg_dump_pids, table_locked, wait_for_pg_dump_waiting


def _service(url: str, directory: Path, bin_dir: Path, **kwargs: object) -> BackupService:
    dumper = PgDumper(Target.from_url(url), [bin_dir])
    return BackupService(LocalStorage(directory), dumper, **kwargs)  # type: ignore[arg-type]


def _files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_service_create_writes_a_real_dump(
    database: str, backup_dir: Path, cluster: ThrowawayCluster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pgkeep")
    service = _service(database, backup_dir, cluster.bin_dir)
    backup = service.create()
    path = backup_dir / backup.name
    assert _files(backup_dir) == [backup.name, backup.name + ".json"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    manifest = json.loads((backup_dir / (backup.name + ".json")).read_text())
    assert manifest["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert manifest["sizeBytes"] == path.stat().st_size
    assert manifest["rowCounts"] == {
        "public.customer": 500,
        "public.product": 100,
        "public.purchase": 5000,
    }
    assert manifest["database"] == Target.from_url(database).dbname
    assert (manifest["format"], manifest["compression"]) == ("plain", "none")
    assert backup.size_bytes == path.stat().st_size > 10_000
    text = path.read_text()
    assert "CREATE TABLE public.customer" in text
    assert "Customer 500" in text
    assert "-- PostgreSQL database dump complete" in text[-300:]
    assert service.list()[0].name == backup.name
    lines = [r.getMessage() for r in caplog.records]
    db = Target.from_url(database).dbname
    assert f"backup started target={db} backup={backup.name} format=plain compression=none" in lines
    assert any(
        line.startswith(f"backup finished target={db} backup={backup.name} size_bytes=")
        for line in lines
    )
    assert not any(cluster.password in line for line in lines)


def test_service_same_second_creates_get_distinct_names(
    database: str, cluster: ThrowawayCluster
) -> None:
    fixed = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    dumper = PgDumper(Target.from_url(database), [cluster.bin_dir])
    service = BackupService(MemoryStorage(), dumper, clock=lambda: fixed)
    names = [service.create().name for _ in range(3)]
    assert names == [
        "backup-2025-01-02T03-04-05.sql",
        "backup-2025-01-02T03-04-05-2.sql",
        "backup-2025-01-02T03-04-05-3.sql",
    ]
    assert [b.name for b in service.list()] == names[::-1]


def test_service_pg_dump_failure_leaves_nothing(
    database: str, backup_dir: Path, cluster: ThrowawayCluster, caplog: pytest.LogCaptureFixture
) -> None:
    db = Target.from_url(database).dbname
    cluster.execute(f"CREATE ROLE weak_{db} LOGIN PASSWORD 'weak-pass-{db}'")
    cluster.execute(
        f"REVOKE ALL ON customer FROM PUBLIC; GRANT CONNECT ON DATABASE {db} TO weak_{db}", db
    )
    url = f"postgresql://weak_{db}:weak-pass-{db}@127.0.0.1:{cluster.port}/{db}"
    service = _service(url, backup_dir, cluster.bin_dir)
    with pytest.raises(DumpFailed) as caught:
        service.create()
    assert caught.value.message == f"pg_dump failed with exit code 1 on database {db!r}"
    assert caught.value.exit_code == 1
    assert "permission denied" in caught.value.details
    assert f"weak-pass-{db}" not in caught.value.details
    assert _files(backup_dir) == []
    assert any(r.getMessage().startswith(f"backup failed target={db}") for r in caplog.records)
    cluster.execute(f"DROP OWNED BY weak_{db}; DROP ROLE weak_{db}", db)


def test_service_pg_dump_killed_mid_dump_leaves_nothing(
    database: str, backup_dir: Path, cluster: ThrowawayCluster
) -> None:
    service = _service(database, backup_dir, cluster.bin_dir)
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            service.create()
        except BaseException as exc:
            outcome.append(exc)

    with table_locked(database):
        thread = threading.Thread(target=run)
        thread.start()
        wait_for_pg_dump_waiting(database)
        assert any(name.endswith(".partial") for name in _files(backup_dir))
        [pid] = pg_dump_pids(database)
        os.kill(pid, signal.SIGKILL)
        thread.join(timeout=30)
    [error] = outcome
    assert isinstance(error, DumpFailed)
    assert "was killed by signal 9" in error.message
    assert _files(backup_dir) == []


def test_service_empty_output_is_a_failure(
    database: str, backup_dir: Path, tmp_path: Path, cluster: ThrowawayCluster
) -> None:
    # Fault injection: a pg_dump that reports the right version, exits 0 and writes nothing,
    # the failure other tools record as a good 0-byte backup.
    real = cluster.bin_dir / "pg_dump"
    fake_dir = tmp_path / "bin"
    fake_dir.mkdir()
    (fake_dir / "pg_dump").write_text(
        f'#!/bin/sh\nif [ "$1" = --version ]; then exec {real} --version; fi\nexit 0\n'
    )
    (fake_dir / "pg_dump").chmod(0o755)
    service = _service(database, backup_dir, fake_dir)
    with pytest.raises(DumpFailed, match="produced no output"):
        service.create()
    assert _files(backup_dir) == []


def test_service_concurrent_create_is_refused(
    database: str, backup_dir: Path, cluster: ThrowawayCluster
) -> None:
    service = _service(database, backup_dir, cluster.bin_dir)
    results: list[object] = []
    with table_locked(database):
        thread = threading.Thread(target=lambda: results.append(service.create()))
        thread.start()
        wait_for_pg_dump_waiting(database)
        with pytest.raises(Conflict, match="already running"):
            service.create()
    thread.join(timeout=30)
    assert len(results) == 1
    assert len(service.list()) == 1


def test_service_manifest_is_written_before_the_backup_is_visible(
    database: str, backup_dir: Path, cluster: ThrowawayCluster
) -> None:
    service = _service(database, backup_dir, cluster.bin_dir)
    with table_locked(database):
        thread = threading.Thread(target=service.create)
        thread.start()
        wait_for_pg_dump_waiting(database)
        assert service.list() == []
    thread.join(timeout=30)
    [backup] = service.list()
    assert backup.manifest is not None
    assert backup.manifest.row_counts is not None


def test_service_remove_partials_removes_orphan_manifests(
    backup_dir: Path, database: str, cluster: ThrowawayCluster
) -> None:
    service = _service(database, backup_dir, cluster.bin_dir)
    (backup_dir / "backup-2024-01-01T00-00-00.sql.json").write_text("{}")
    (backup_dir / "backup-2024-01-01T00-00-01.sql").write_text("-- by hand")
    assert service.remove_partials() == ["backup-2024-01-01T00-00-00.sql.json"]
    [kept] = service.list()
    assert kept.manifest is None


def _plant(directory: Path, age: timedelta, now: datetime) -> str:
    name = f"backup-{now - age:%Y-%m-%dT%H-%M-%S}.sql"
    (directory / name).write_text("-- old")
    return name


def test_service_retention_runs_only_after_success(
    database: str, backup_dir: Path, cluster: ThrowawayCluster
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    backup_dir.mkdir(mode=0o700)
    old = _plant(backup_dir, timedelta(days=31), now)
    edge = _plant(backup_dir, timedelta(days=29, hours=23), now)
    young = _plant(backup_dir, timedelta(days=29), now)
    failing = _service(
        f"postgresql://postgres:{cluster.password}@127.0.0.1:{cluster.port}/no_such_db",
        backup_dir,
        cluster.bin_dir,
    )
    with pytest.raises(Exception, match="no_such_db"):
        failing.create()
    assert old in _files(backup_dir)  # a failed create deletes nothing

    service = _service(database, backup_dir, cluster.bin_dir, clock=lambda: now)
    new = service.create().name
    assert _files(backup_dir) == sorted([edge, young, new, new + ".json"])
