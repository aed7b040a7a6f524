"""Create, verify, restore round trips for every server major, format and compression, on
Pagila and on a database built to be hostile; the restored database must be identical."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pgkeep import wiring
from pgkeep.config import load_settings
from pgkeep.core import pipeline
from pgkeep.core.models import BackupOptions, Compression, DumpFormat
from pgkeep.core.service import BackupService
from pgkeep.throwaway.cluster import ThrowawayCluster, available_bin_dirs
from tests.conftest import ACTOR, SECRET
from tests.roundtrip import FIXTURES, PAGILA, fingerprint, load

MAJORS = sorted(available_bin_dirs())
COMBOS = [
    BackupOptions(DumpFormat.PLAIN, Compression.NONE),
    BackupOptions(DumpFormat.PLAIN, Compression.GZIP),
    BackupOptions(DumpFormat.PLAIN, Compression.ZSTD, 5),
    BackupOptions(DumpFormat.CUSTOM, Compression.NONE),
    BackupOptions(DumpFormat.CUSTOM, Compression.GZIP, 9),
]
SOURCES = {
    "pagila": [PAGILA / "pagila-schema.sql", PAGILA / "pagila-data.sql"],
    "hostile": [FIXTURES / "hostile.sql"],
}

Sources = Callable[[int, str], tuple[ThrowawayCluster, str, dict[str, object]]]


@pytest.fixture(scope="session")
def sources(pg_bin_dirs: dict[int, Path]) -> Iterator[Sources]:
    """A server per major, started on first use, with each source database loaded once."""
    clusters: dict[int, ThrowawayCluster] = {}
    loaded: dict[tuple[int, str], dict[str, object]] = {}

    def get(major: int, source: str) -> tuple[ThrowawayCluster, str, dict[str, object]]:
        if source == "pagila" and not PAGILA.exists():
            pytest.skip(f"the Pagila fixture is not at {PAGILA} (shared/ beside the repository)")
        if major not in clusters:
            clusters[major] = ThrowawayCluster(pg_bin_dirs[major])
            clusters[major].start()
        cluster = clusters[major]
        if (major, source) not in loaded:
            cluster.create_database(source)
            load(cluster.url(source), *SOURCES[source], psql=cluster.bin_dir / "psql")
            loaded[(major, source)] = fingerprint(cluster.url(source), cluster.bin_dir / "pg_dump")
        return cluster, source, loaded[(major, source)]

    yield get
    for cluster in clusters.values():
        cluster.stop()


def _service(
    cluster: ThrowawayCluster, dbname: str, backup_dir: Path, restore_jobs: int = 1
) -> BackupService:
    settings = load_settings(
        database_url=cluster.url(dbname),
        jwt_secret=SECRET,
        backup_dir=backup_dir,
        pg_bin_dir=cluster.bin_dir,
        restore_jobs=restore_jobs,
    )
    return wiring.build(settings).service()


@pytest.mark.parametrize("options", COMBOS, ids=lambda o: f"{o.format}-{o.compression}")
@pytest.mark.parametrize("source", list(SOURCES))
@pytest.mark.parametrize("major", MAJORS, ids=lambda m: f"pg{m}")
def test_roundtrip_restores_an_identical_database(
    sources: Sources, major: int, source: str, options: BackupOptions, tmp_path: Path
) -> None:
    cluster, dbname, expected = sources(major, source)
    service = _service(cluster, dbname, tmp_path / "backups")
    backup = service.creating.create(options, ACTOR)
    assert backup.name.endswith(pipeline.extension(options))
    assert backup.manifest is not None
    assert backup.manifest.row_counts == expected["counts"]
    magic = {
        ".sql": b"--",
        ".sql.gz": b"\x1f\x8b",
        ".sql.zst": b"\x28\xb5\x2f\xfd",
        ".dump": b"PGDMP",
    }
    head = (tmp_path / "backups" / backup.name).read_bytes()[:5]
    assert head.startswith(magic[pipeline.extension(options)])  # custom archives are never wrapped

    verification = service.proving.verify(backup.name, restore=False, actor=ACTOR)
    assert verification.verified, verification.checks

    target = f"restored_{source}_{options.format}_{options.compression}"
    result = service.proving.restore(backup.name, target, actor=ACTOR)
    try:
        assert result.target_database == target
        assert all(t.ok for t in result.tables)
        assert {t.table: t.actual for t in result.tables} == expected["counts"]
        restored = fingerprint(cluster.url(target), cluster.bin_dir / "pg_dump")
        for part in ("schema", "rows", "sequences", "large_objects", "counts"):
            assert restored[part] == expected[part], part
    finally:
        cluster.execute(f'DROP DATABASE IF EXISTS "{target}" WITH (FORCE)')


@pytest.mark.parametrize("source", list(SOURCES))
def test_parallel_restore_of_a_custom_archive(
    sources: Sources, source: str, tmp_path: Path
) -> None:
    """PGKEEP_RESTORE_JOBS > 1: pg_restore --jobs on an archive pg_dump wrote to a pipe."""
    cluster, dbname, expected = sources(MAJORS[-1], source)
    service = _service(cluster, dbname, tmp_path / "backups", restore_jobs=3)
    backup = service.creating.create(BackupOptions(DumpFormat.CUSTOM, Compression.GZIP), ACTOR)
    target = f"parallel_{source}"
    result = service.proving.restore(backup.name, target, actor=ACTOR)
    try:
        assert all(t.ok for t in result.tables)
        restored = fingerprint(cluster.url(target), cluster.bin_dir / "pg_dump")
        for part in ("schema", "rows", "sequences", "large_objects", "counts"):
            assert restored[part] == expected[part], part
    finally:
        cluster.execute(f'DROP DATABASE IF EXISTS "{target}" WITH (FORCE)')


@pytest.mark.parametrize("major", MAJORS, ids=lambda m: f"pg{m}")
def test_roundtrip_verify_with_test_restore(sources: Sources, major: int, tmp_path: Path) -> None:
    cluster, dbname, _ = sources(major, "hostile")
    service = _service(cluster, dbname, tmp_path / "backups")
    backup = service.creating.create(BackupOptions(DumpFormat.CUSTOM, Compression.GZIP), ACTOR)
    verification = service.proving.verify(backup.name, restore=True, actor=ACTOR)
    assert verification.verified, verification.checks
    names = [c.name for c in verification.checks]
    assert names == ["manifest", "sha256", "readable", "archive", "restore"]
    assert "match the manifest" in verification.checks[-1].details
    with pytest.raises(Exception):  # noqa: B017,PT011 (any error: the scratch database must be gone)
        cluster.execute("SELECT 1", "pgkeep_verify_x")
    remaining = _databases(cluster)
    assert not [d for d in remaining if d.startswith(("pgkeep_verify_", "pgkeep_restore_"))]
    saved = service.catalog.get(backup.name).manifest
    assert saved is not None
    assert saved.verification is not None
    assert saved.verification.verified


def _databases(cluster: ThrowawayCluster) -> list[str]:
    import psycopg

    with psycopg.connect(cluster.url()) as conn:
        return [str(r[0]) for r in conn.execute("SELECT datname FROM pg_database").fetchall()]


@pytest.mark.parametrize(
    ("mutation", "part"),
    [
        (
            """UPDATE "Ödd Schéma"."Table ""Quoted"" Name" SET payload = '\\x00' WHERE id = 1""",
            "rows",
        ),
        ("""SELECT setval('"Ödd Schéma"."counter seq"', 1)""", "sequences"),
        ("SELECT lo_unlink(min(oid)) FROM pg_largeobject_metadata", "large_objects"),
        ("""COMMENT ON TABLE "select"."from" IS 'changed'""", "schema"),
        ("DELETE FROM empty_table", None),
    ],
)
def test_fingerprint_detects_each_kind_of_difference(
    sources: Sources, mutation: str, part: str | None
) -> None:
    """The control for the round trips: the comparison fails when a copy differs."""
    cluster, dbname, expected = sources(MAJORS[-1], "hostile")
    cluster.execute(f'CREATE DATABASE mutated TEMPLATE "{dbname}"')
    try:
        cluster.execute(mutation, "mutated")
        changed = fingerprint(cluster.url("mutated"), cluster.bin_dir / "pg_dump")
    finally:
        cluster.execute("DROP DATABASE mutated WITH (FORCE)")
    differing = {k for k in expected if changed[k] != expected[k]}
    assert differing == ({part} if part else set())
