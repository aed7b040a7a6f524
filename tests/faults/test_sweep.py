"""What a start sweeps: only the scratch and staging databases and loader roles of jobs that
are over, never another instance's (or another deployment's) work in progress.

Seen on the previous main: a starting instance dropped every `pgkeep_verify_*` and
`pgkeep_restore_*` database, including another live instance's, so a good backup was
recorded as failing verification and a running restore failed.
"""

from __future__ import annotations

import secrets
import threading
from pathlib import Path
from typing import Any

import psycopg

from pgkeep.core.control import Control
from pgkeep.core.jobs import JobKind
from pgkeep.throwaway.cluster import ThrowawayCluster
from tests.conftest import core_service


def _databases(cluster: ThrowawayCluster) -> set[str]:
    with psycopg.connect(cluster.url()) as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'pgkeep%'")
        return {str(r[0]) for r in rows.fetchall()}


def _roles(cluster: ThrowawayCluster) -> set[str]:
    with psycopg.connect(cluster.url()) as conn:
        rows = conn.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE 'pgkeep\\_load\\_%'")
        return {str(r[0]) for r in rows.fetchall()}


def test_a_start_sweeps_only_what_finished_jobs_left(
    cluster: ThrowawayCluster, database: str, tmp_path: Path
) -> None:
    service = core_service(database, tmp_path / "backups", cluster.bin_dir)
    release = threading.Event()

    def running(control: Control) -> tuple[str | None, Any]:
        release.wait(30)
        return None, None

    def done(control: Control) -> tuple[str | None, Any]:
        return None, None

    live = service.jobs.submit(JobKind.VERIFY, running, pool=service.pools.proving)
    over = service.jobs.submit(JobKind.VERIFY, done, pool=service.pools.proving)
    service.jobs.wait(over.id, timeout=10)
    unknown = secrets.token_hex(8)  # another deployment's job on the same server
    legacy = secrets.token_hex(6)  # named by an earlier version, with no job
    names = {
        "live": f"pgkeep_verify_{live.id}",
        "over": f"pgkeep_restore_{over.id}",
        "unknown": f"pgkeep_verify_{unknown}",
        "legacy": f"pgkeep_verify_{legacy}",
    }
    try:
        for name in names.values():
            cluster.execute(f"CREATE DATABASE {name}")
        for job in (live.id, over.id, unknown):
            cluster.execute(f"CREATE ROLE pgkeep_load_{job}")
        dropped = service.recover()
        assert set(dropped) == {names["over"], names["legacy"], f"pgkeep_load_{over.id}"}
        left = _databases(cluster)
        assert {names["live"], names["unknown"]} <= left
        assert not {names["over"], names["legacy"]} & left
        assert {f"pgkeep_load_{live.id}", f"pgkeep_load_{unknown}"} <= _roles(cluster)
    finally:
        release.set()
        for name in names.values():
            cluster.execute(f"DROP DATABASE IF EXISTS {name}")
        for job in (live.id, over.id, unknown):
            cluster.execute(f"DROP ROLE IF EXISTS pgkeep_load_{job}")


def test_a_start_removes_archives_an_earlier_version_staged_by_name(
    cluster: ThrowawayCluster, database: str, tmp_path: Path
) -> None:
    staging = tmp_path / "staging"
    staging.mkdir()
    left = staging / "pgkeep-archive-abc123"
    left.write_bytes(b"PGDMP decrypted plaintext")
    other = staging / "someone-elses.tmp"
    other.write_bytes(b"x")
    service = core_service(database, tmp_path / "backups", cluster.bin_dir, tmp_dir=staging)
    assert str(left) in service.recover()
    assert sorted(p.name for p in staging.iterdir()) == ["someone-elses.tmp"]


def test_a_start_sweeps_what_an_interrupted_rehearsal_left_on_its_server(
    cluster: ThrowawayCluster, older_cluster: ThrowawayCluster, database: str, tmp_path: Path
) -> None:
    service = core_service(
        database,
        tmp_path / "backups",
        cluster.bin_dir,
        rehearsal_database_urls=[older_cluster.url("postgres")],
    )
    over = service.jobs.submit(JobKind.VERIFY, lambda c: (None, None), pool=service.pools.proving)
    service.jobs.wait(over.id, timeout=10)
    name = f"pgkeep_verify_{over.id}"
    older_cluster.execute(f"CREATE DATABASE {name}")
    older_cluster.execute(f"CREATE ROLE pgkeep_load_{over.id}")
    try:
        assert {name, f"pgkeep_load_{over.id}"} <= set(service.recover())
        assert name not in _databases(older_cluster)
        assert f"pgkeep_load_{over.id}" not in _roles(older_cluster)
    finally:
        older_cluster.execute(f"DROP DATABASE IF EXISTS {name}")
        older_cluster.execute(f"DROP ROLE IF EXISTS pgkeep_load_{over.id}")
