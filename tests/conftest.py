"""Shared fixtures: one real throwaway PostgreSQL server per session, real pg_dump, the real app.

PGKEEP_TEST_PG_MAJOR picks the server major (default: the newest this machine has).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import pytest
from fastapi import FastAPI

from pgkeep import tokens, wiring
from pgkeep.config import Settings, load_settings
from pgkeep.core import manifests
from pgkeep.core.events import Actor
from pgkeep.core.models import Compression, DumpFormat, Manifest
from pgkeep.core.ports import Storage
from pgkeep.core.service import BackupService
from pgkeep.core.signing import Signer
from pgkeep.http.app import create_app
from pgkeep.postgres.connection import Connection
from pgkeep.throwaway.cluster import ThrowawayCluster, available_bin_dirs
from pgkeep.throwaway.s3 import ThrowawayS3

SAMPLE_SQL = Path(__file__).parents[1] / "src" / "pgkeep" / "demo" / "sample.sql"
SECRET = "t3st-" + "k9Qw7ZpL2mXv8RbN4cYd6HfJ1sTgUaEo"
SIGNING_KEY = "s1gn-" + "Zq8Lm3Xw7Rt2Yb6Nc4Vd9Hf1Jk5Gp0Ea"
ACTOR = Actor("tester", "cli")


def core_service(
    url: str,
    backup_dir: Path,
    bin_dir: Path,
    *,
    storage: Storage | None = None,
    clock: Callable[[], datetime] | None = None,
    **overrides: object,
) -> BackupService:
    """A target's service as `pgkeep` wires it (real pg_dump), for calling the core directly."""
    settings = load_settings(
        database_url=url, jwt_secret=SECRET, backup_dir=backup_dir, pg_bin_dir=bin_dir, **overrides
    )
    runtime = wiring.build(settings, clock=clock or wiring.utc_now, storage=storage)
    return runtime.service()


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests configure pgkeep explicitly; nothing leaks in from the developer's shell. Each
    test has its own state directory (its job board), as each has its own backups."""
    for name in list(os.environ):
        if name.startswith("PGKEEP_") and name != "PGKEEP_TEST_PG_MAJOR":
            monkeypatch.delenv(name)
    # Beside the test's directory, not in it: some tests keep their backups in tmp_path
    # itself, and pgkeep refuses a state directory inside the backup directory.
    monkeypatch.setenv("PGKEEP_STATE_DIR", str(tmp_path.with_name(tmp_path.name + "-state")))


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """The CLI configures the root logger (as entry points do); undo it after each test, so
    no later log line goes to a stream pytest has already closed."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(scope="session")
def pg_bin_dirs() -> dict[int, Path]:
    found = available_bin_dirs()
    assert found, "no PostgreSQL server binaries: run `make test`, which installs them"
    return found


@pytest.fixture(scope="session")
def cluster(pg_bin_dirs: dict[int, Path]) -> Iterator[ThrowawayCluster]:
    major = int(os.environ.get("PGKEEP_TEST_PG_MAJOR", max(pg_bin_dirs)))
    with ThrowawayCluster(pg_bin_dirs[major]) as server:
        yield server


@pytest.fixture(scope="session")
def older_cluster(pg_bin_dirs: dict[int, Path]) -> Iterator[ThrowawayCluster]:
    """A server of the oldest major here (Debian's 15), beside `cluster` (the newest): a
    source with extensions the newest lacks, or a rehearsal server it cannot restore into."""
    if min(pg_bin_dirs) == max(pg_bin_dirs):
        pytest.skip("only one PostgreSQL major is installed")
    with ThrowawayCluster(pg_bin_dirs[min(pg_bin_dirs)]) as server:
        yield server


@pytest.fixture
def database(cluster: ThrowawayCluster) -> Iterator[str]:
    """A fresh database with the sample data; its URL (with password)."""
    name = "db_" + secrets.token_hex(4)
    url = cluster.create_database(name)
    cluster.execute(SAMPLE_SQL.read_text(), name)
    yield url
    cluster.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def backup_dir(tmp_path: Path) -> Path:
    return tmp_path / "backups"


@pytest.fixture
def make_settings(
    database: str, backup_dir: Path, cluster: ThrowawayCluster
) -> Callable[..., Settings]:
    def make(**overrides: object) -> Settings:
        values: dict[str, object] = {
            "database_url": database,
            "jwt_secret": SECRET,
            "backup_dir": backup_dir,
            "pg_bin_dir": cluster.bin_dir,
        }
        return load_settings(**{**values, **overrides})

    return make


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return create_app(settings)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def api(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the app, with its lifespan run around it (start-up work, as uvicorn does)."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://pgkeep.test") as client,
    ):
        yield client


@pytest.fixture
def token(settings: Settings) -> str:
    return tokens.mint(settings, sub="alice", role="OWNER", ttl=timedelta(hours=1))


@pytest.fixture
def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def plant_backup(
    settings: Settings,
    created_at: datetime,
    data: bytes = b"-- planted\n",
    *,
    signed: bool = True,
    database: str | None = None,
) -> str:
    """A backup of the settings' target as pgkeep would have written it at `created_at`:
    the file and its manifest (signed with the settings' key, or from before signing)."""
    name = f"backup-{created_at:%Y-%m-%dT%H-%M-%S}.sql"
    directory = settings.backup_dir
    directory.mkdir(mode=0o700, exist_ok=True)
    (directory / name).write_bytes(data)
    manifest = Manifest(
        name=name,
        format=DumpFormat.PLAIN,
        compression=Compression.NONE,
        level=0,
        size_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        database=database or Connection.from_url(settings.require_database_url()).dbname,
        server_version="18.0",
        pg_dump_version="18.0",
        started_at=created_at,
        finished_at=created_at,
        created_by="planted",
        row_counts=None,
    )
    current, old = settings.signing_keys()
    document = json.loads(manifests.to_json(manifest, Signer(current, old)))
    if not signed:  # exactly what 0.1.0 wrote, before signing
        document = {k: v for k, v in document.items() if k in manifests.LEGACY_KEYS}
        document["schemaVersion"] = 1
    (directory / (name + ".json")).write_text(json.dumps(document))
    return name


def connect(url: str) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(url, autocommit=True)


def backup_files(directory: Path) -> list[str]:
    """What a backup directory holds besides pgkeep's own records (jobs, audit log)."""
    if not directory.exists():
        return []
    return sorted(p.name for p in directory.iterdir() if not p.name.startswith("pgkeep-"))


@pytest.fixture(scope="session")
def s3_server() -> Iterator[ThrowawayS3]:
    """One SeaweedFS for the session; tests use buckets or prefixes of their own."""
    with ThrowawayS3() as server:
        server.create_bucket("pgkeep-tests")
        yield server


@pytest.fixture(scope="session")
def slow_database(cluster: ThrowawayCluster) -> str:
    """A database that takes several seconds to dump with gzip level 9 (about 100 MB of rows)."""
    cluster.create_database("slow")
    cluster.execute(
        "CREATE TABLE big AS SELECT i, md5(i::text) || md5((i * 7)::text) AS a, random() AS r"
        " FROM generate_series(1, 1000000) AS i; ANALYZE big;",
        "slow",
    )
    return cluster.url("slow")
