"""One reader: a verify with restore reads the stored backup once (counted where the store
adapters read, and exported as `pgkeep_store_read_bytes_total`), whatever its format,
encrypted or not, on a local disk or S3."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from pgkeep.core.models import BackupOptions, Compression, DumpFormat
from pgkeep.storage.meter import READS
from pgkeep.throwaway.cluster import ThrowawayCluster
from pgkeep.throwaway.s3 import ThrowawayS3
from tests.conftest import ACTOR, core_service

MANIFESTS = 64 * 1024  # the manifest (read at the start and again to record the result)


@pytest.fixture
def sizable(cluster: ThrowawayCluster) -> Iterator[str]:
    """A database of a few MB, so a second read of the backup could not hide in the margin."""
    name = "reader_" + secrets.token_hex(4)
    url = cluster.create_database(name)
    cluster.execute(
        "CREATE TABLE t AS SELECT i, md5(i::text) AS a, md5((i * 7)::text) AS b"
        " FROM generate_series(1, 60000) AS i",
        name,
    )
    yield url
    cluster.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _read_once(service: object, fmt: DumpFormat, compression: Compression) -> tuple[int, int]:
    backup = service.creating.create(BackupOptions(fmt, compression), ACTOR)  # type: ignore[attr-defined]
    store = service.catalog.storage.where  # type: ignore[attr-defined]
    before = READS.totals().get(store, 0)
    verification = service.proving.verify(backup.name, restore=True, actor=ACTOR)  # type: ignore[attr-defined]
    assert verification.verified, verification.checks
    return READS.totals().get(store, 0) - before, backup.size_bytes


@pytest.mark.parametrize(
    ("fmt", "compression"),
    [
        (DumpFormat.CUSTOM, Compression.NONE),
        (DumpFormat.PLAIN, Compression.GZIP),
    ],
)
def test_a_verify_with_restore_reads_the_stored_backup_once(
    sizable: str,
    cluster: ThrowawayCluster,
    tmp_path: Path,
    fmt: DumpFormat,
    compression: Compression,
) -> None:
    service = core_service(sizable, tmp_path / "backups", cluster.bin_dir)
    read, size = _read_once(service, fmt, compression)
    assert size > 1024 * 1024
    assert size <= read <= size + MANIFESTS, (read, size)


def test_a_verify_with_restore_reads_an_s3_backup_once(
    sizable: str,
    cluster: ThrowawayCluster,
    tmp_path: Path,
    s3_server: ThrowawayS3,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bucket = s3_server.create_bucket("reader-" + secrets.token_hex(4))
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    service = core_service(
        sizable, tmp_path / "backups", cluster.bin_dir, storage_url=f"s3://{bucket}/b"
    )
    read, size = _read_once(service, DumpFormat.CUSTOM, Compression.NONE)
    assert size <= read <= size + MANIFESTS, (read, size)
