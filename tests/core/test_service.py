"""The backup service with the real pg_dump against the real server."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import stat
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pgkeep.core.control import Control
from pgkeep.core.jobs import JobStatus
from pgkeep.core.models import Backup
from pgkeep.core.service import BackupService
from pgkeep.errors import Conflict, DumpFailed
from pgkeep.postgres.connection import Connection
from pgkeep.storage import MemoryStorage
from pgkeep.throwaway.cluster import ThrowawayCluster
from tests.blocking import pg_dump_pids, table_locked, wait_for_pg_dump_waiting
from tests.conftest import ACTOR, backup_files, connect, core_service


def _service(url: str, directory: Path, bin_dir: Path, **kwargs: object) -> BackupService:
    return core_service(url, directory, bin_dir, **kwargs)  # type: ignore[arg-type]


def _create(service: BackupService) -> Backup:
    return service.creating.create(None, ACTOR)


def _files(directory: Path) -> list[str]:
    return backup_files(directory)


def test_service_create_writes_a_real_dump(
    database: str, backup_dir: Path, cluster: ThrowawayCluster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pgkeep")
    service = _service(database, backup_dir, cluster.bin_dir)
    backup = _create(service)
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
    assert manifest["database"] == Connection.from_url(database).dbname
    assert (manifest["format"], manifest["compression"]) == ("plain", "none")
    assert backup.size_bytes == path.stat().st_size > 10_000
    text = path.read_text()
    assert "CREATE TABLE public.customer" in text
    assert "Customer 500" in text
    assert "-- PostgreSQL database dump complete" in text[-300:]
    assert service.catalog.list()[0].name == backup.name
    lines = [r.getMessage() for r in caplog.records]
    db = Connection.from_url(database).dbname
    assert f"backup started target={db} backup={backup.name} format=plain compression=none" in lines
    assert any(
        line.startswith(f"backup finished target={db} backup={backup.name} size_bytes=")
        for line in lines
    )
    assert not any(cluster.password in line for line in lines)


def test_service_same_second_creates_get_distinct_names(
    database: str, cluster: ThrowawayCluster, tmp_path: Path
) -> None:
    fixed = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    service = _service(
        database, tmp_path, cluster.bin_dir, storage=MemoryStorage(), clock=lambda: fixed
    )
    names = [_create(service).name for _ in range(3)]
    assert names == [
        "backup-2025-01-02T03-04-05.sql",
        "backup-2025-01-02T03-04-05-2.sql",
        "backup-2025-01-02T03-04-05-3.sql",
    ]
    assert [b.name for b in service.catalog.list()] == names[::-1]


def test_service_pg_dump_failure_leaves_nothing(
    database: str, backup_dir: Path, cluster: ThrowawayCluster, caplog: pytest.LogCaptureFixture
) -> None:
    db = Connection.from_url(database).dbname
    cluster.execute(f"CREATE ROLE weak_{db} LOGIN PASSWORD 'weak-pass-{db}'")
    cluster.execute(
        f"REVOKE ALL ON customer FROM PUBLIC; GRANT CONNECT ON DATABASE {db} TO weak_{db}", db
    )
    url = f"postgresql://weak_{db}:weak-pass-{db}@127.0.0.1:{cluster.port}/{db}"
    service = _service(url, backup_dir, cluster.bin_dir)
    with pytest.raises(DumpFailed) as caught:
        _create(service)
    # Cause first (issue 20): the message ends with pg_dump's own error, the details lead
    # with it, before pg_dump's verbose log.
    assert caught.value.message.startswith(
        f"pg_dump failed with exit code 1 on database {db!r}: query failed: ERROR:  permission"
    ), caught.value.message
    assert caught.value.exit_code == 1
    assert caught.value.details.startswith("pg_dump: error: query failed: ERROR:  permission")
    assert "pg_dump: reading" in caught.value.details  # the verbose log still follows
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
            _create(service)
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
        _create(service)
    assert _files(backup_dir) == []


def test_service_concurrent_create_is_refused(
    database: str, backup_dir: Path, cluster: ThrowawayCluster
) -> None:
    service = _service(database, backup_dir, cluster.bin_dir)
    results: list[object] = []
    with table_locked(database):
        thread = threading.Thread(target=lambda: results.append(_create(service)))
        thread.start()
        wait_for_pg_dump_waiting(database)
        with pytest.raises(Conflict, match="already running"):
            _create(service)
    thread.join(timeout=30)
    assert len(results) == 1
    assert len(service.catalog.list()) == 1


def test_service_manifest_is_written_before_the_backup_is_visible(
    database: str, backup_dir: Path, cluster: ThrowawayCluster
) -> None:
    service = _service(database, backup_dir, cluster.bin_dir)
    with table_locked(database):
        thread = threading.Thread(target=_create, args=(service,))
        thread.start()
        wait_for_pg_dump_waiting(database)
        assert service.catalog.list() == []
    thread.join(timeout=30)
    [backup] = service.catalog.list()
    assert backup.manifest is not None
    assert backup.manifest.row_counts is not None


def test_service_remove_partials_removes_orphan_manifests(
    backup_dir: Path, database: str, cluster: ThrowawayCluster
) -> None:
    service = _service(database, backup_dir, cluster.bin_dir)
    (backup_dir / "backup-2024-01-01T00-00-00.sql.json").write_text("{}")
    (backup_dir / "backup-2024-01-01T00-00-01.sql").write_text("-- by hand")
    assert service.catalog.remove_partials() == ["backup-2024-01-01T00-00-00.sql.json"]
    [kept] = service.catalog.list()
    assert kept.manifest is None


def _plant(directory: Path, age: timedelta, now: datetime, database: str | None) -> str:
    """A backup as pgkeep wrote them before signing (schema 1), or with no manifest at all."""
    name = f"backup-{now - age:%Y-%m-%dT%H-%M-%S}.sql"
    data = b"-- old"
    (directory / name).write_bytes(data)
    if database is not None:
        at = (now - age).isoformat().replace("+00:00", "Z")
        legacy = {
            "schemaVersion": 1,
            "filename": name,
            "format": "plain",
            "compression": "none",
            "level": 0,
            "sizeBytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "database": database,
            "serverVersion": "18.0",
            "pgDumpVersion": "18.0",
            "startedAt": at,
            "finishedAt": at,
            "durationMs": 0,
            "createdBy": "",
            "rowCounts": None,
            "verification": None,
        }
        (directory / (name + ".json")).write_text(json.dumps(legacy))
    return name


def test_service_retention_runs_only_after_success_and_only_on_its_own(
    database: str, backup_dir: Path, cluster: ThrowawayCluster
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    db = Connection.from_url(database).dbname
    backup_dir.mkdir(mode=0o700)
    old = _plant(backup_dir, timedelta(days=31), now, db)
    edge = _plant(backup_dir, timedelta(days=29, hours=23), now, db)
    young = _plant(backup_dir, timedelta(days=29), now, db)
    others = _plant(backup_dir, timedelta(days=40), now, "another_db")
    by_hand = _plant(backup_dir, timedelta(days=41), now, None)
    failing = _service(
        f"postgresql://postgres:{cluster.password}@127.0.0.1:{cluster.port}/no_such_db",
        backup_dir,
        cluster.bin_dir,
    )
    with pytest.raises(Exception, match="no_such_db"):
        _create(failing)
    assert old in _files(backup_dir)  # a failed create deletes nothing

    service = _service(database, backup_dir, cluster.bin_dir, clock=lambda: now)
    new = _create(service).name
    kept = {edge, young, new, others, by_hand}
    assert _files(backup_dir) == sorted(kept | {n + ".json" for n in kept - {by_hand}})
    # Another database's backup is not this target's: never listed, never deleted here.
    assert others not in [b.name for b in service.catalog.list()]
    # A file without a manifest is listed (unsigned), never deleted by retention.
    [listed] = [b for b in service.catalog.list() if b.name == by_hand]
    assert not listed.signed


def test_progress_on_never_analyzed_tables_never_runs_ahead(
    database: str, backup_dir: Path, cluster: ThrowawayCluster
) -> None:
    """relpages is 0 until ANALYZE: the estimate showed 99% from the first event."""
    db = Connection.from_url(database).dbname
    cluster.execute(
        "CREATE TABLE fresh AS SELECT i, md5(i::text) AS h FROM generate_series(1, 200000) i", db
    )
    with connect(database) as conn:
        assert conn.execute("SELECT relpages FROM pg_class WHERE relname = 'fresh'").fetchone() == (
            0,
        )
    seen: list[tuple[int, float | None]] = []
    control = Control()
    control_report = control.report

    def record(**changes: object) -> None:
        control_report(**changes)
        seen.append((control.progress.bytes_written, control.progress.percent))

    control.report = record  # type: ignore[method-assign]
    service = _service(database, backup_dir, cluster.bin_dir)
    backup = service.creating.create(None, ACTOR, control)
    with_bytes = [(b, p) for b, p in seen if b > 0]
    assert with_bytes
    first_bytes, first_percent = with_bytes[0]
    assert first_percent is not None
    assert first_percent <= 100 * first_bytes / (backup.size_bytes * 0.5)  # within 2x of true
    assert first_percent < 50
    percents = [p for _, p in with_bytes if p is not None]
    assert percents == sorted(percents)
    assert max(percents) <= 99


def test_a_dump_that_runs_too_long_is_stopped_and_leaves_nothing(
    database: str, backup_dir: Path, cluster: ThrowawayCluster
) -> None:
    service = _service(database, backup_dir, cluster.bin_dir, dump_timeout="1s")
    started = time.monotonic()
    with table_locked(database), pytest.raises(DumpFailed) as caught:
        _create(service)
    assert time.monotonic() - started < 20
    assert "ran longer than PGKEEP_DUMP_TIMEOUT (0:00:01)" in caught.value.message
    assert _files(backup_dir) == []
    with table_locked(database):  # as a job (the API's and the scheduler's way): it fails
        job = service.jobs.wait(service.start_create(None, ACTOR).id)
    assert job.status is JobStatus.FAILED, job
    assert job.error is not None
    assert "ran longer than PGKEEP_DUMP_TIMEOUT" in job.error


def test_a_table_locked_too_long_fails_the_dump(
    database: str, backup_dir: Path, cluster: ThrowawayCluster
) -> None:
    service = _service(database, backup_dir, cluster.bin_dir, lock_wait_timeout="1s")
    with table_locked(database), pytest.raises(DumpFailed) as caught:
        _create(service)
    assert "timeout" in caught.value.details
    assert "LOCK TABLE" in caught.value.details
    assert _files(backup_dir) == []
