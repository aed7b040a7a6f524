"""Bounded work and nothing leaked: a verify queue, swept scratch databases, kept job records,
concurrent pins, and an unreachable scratch server that never marks a good backup failed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import pytest

from pgkeep.config import Settings
from pgkeep.core.jobs import Job, JobKind, JobStatus, Pool
from pgkeep.core.runner import JobRunner
from pgkeep.http.app import create_app
from pgkeep.local.board import LocalJobBoard
from pgkeep.local.state import StateFile
from pgkeep.throwaway.cluster import ThrowawayCluster

pytestmark = pytest.mark.anyio


def _databases(cluster: ThrowawayCluster) -> set[str]:
    with psycopg.connect(cluster.url()) as conn:
        return {str(r[0]) for r in conn.execute("SELECT datname FROM pg_database").fetchall()}


async def test_verify_queue_is_bounded_with_429_and_retry_after(
    make_settings: Callable[..., Settings],
    auth: dict[str, str],
    slow_database: str,
    cluster: ThrowawayCluster,
) -> None:
    settings = make_settings(database_url=slow_database, verify_concurrency=1, verify_queue=2)
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://t", timeout=120) as api,
    ):
        name = (await api.post("/api/backup/create", headers=auth)).json()["filename"]
        url = f"/api/backup/{name}/verify?async=true"
        answers = [await api.post(url, headers=auth, json={"restore": True}) for _ in range(5)]
        assert [a.status_code for a in answers] == [202, 202, 202, 429, 429]
        assert answers[3].headers["retry-after"].isdigit()
        assert "queued" in answers[3].json()["error"]
        jobs = [a.json()["job"] for a in answers[:3]]
        assert [j["status"] for j in jobs] == ["running", "queued", "queued"]
        for job in reversed(jobs):
            cancelled = await api.delete(f"/api/backup/jobs/{job['id']}", headers=auth)
            assert cancelled.json()["job"]["status"] == "cancelled"
        again = await api.post(url, headers=auth, json={"restore": False})
        assert again.status_code == 202  # the queue drained
    assert not [d for d in _databases(cluster) if d.startswith("pgkeep_verify_")]


async def test_leftover_scratch_and_staging_databases_are_swept_at_start(
    settings: Settings, cluster: ThrowawayCluster, caplog: pytest.LogCaptureFixture
) -> None:
    cluster.execute("CREATE DATABASE pgkeep_verify_0123456789ab")
    cluster.execute("CREATE DATABASE pgkeep_restore_0123456789ab")
    cluster.execute("CREATE DATABASE pgkeep_other")  # not pgkeep's naming: left alone
    try:
        app = create_app(settings)
        assert "pgkeep_verify_0123456789ab" in _databases(cluster)  # building touches nothing
        async with app.router.lifespan_context(app):
            remaining = _databases(cluster)
        assert "pgkeep_verify_0123456789ab" not in remaining
        assert "pgkeep_restore_0123456789ab" not in remaining
        assert "pgkeep_other" in remaining
        assert any("pgkeep_verify_0123456789ab" in r.getMessage() for r in caplog.records)
    finally:
        cluster.execute("DROP DATABASE IF EXISTS pgkeep_other")


def test_job_records_are_kept_for_a_set_time_not_a_count(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    board = LocalJobBoard(StateFile(tmp_path / "state"), keep_for=timedelta(days=7))
    for i in range(300):
        started = now - timedelta(hours=i, minutes=1)
        job = Job(f"j{i}", JobKind.VERIFY, JobStatus.QUEUED, None, started)
        board.begin(job, Pool("proving", 1000), None)
        board.save(replace(job, status=JobStatus.SUCCEEDED, finished_at=started))
    runner = JobRunner(board, lambda: now)
    runner.recover()
    kept = {j.id for j in runner.list()}
    assert len(kept) == 168  # finished less than 168 hours ago
    assert "j167" in kept
    assert "j168" not in kept


async def test_concurrent_pins_all_succeed(api: httpx.AsyncClient, auth: dict[str, str]) -> None:
    name = (await api.post("/api/backup/create", headers=auth)).json()["filename"]
    answers = await asyncio.gather(
        *(api.post(f"/api/backup/{name}/pin", headers=auth) for _ in range(10))
    )
    assert [a.status_code for a in answers] == [200] * 10
    assert (await api.delete(f"/api/backup/{name}", headers=auth)).status_code == 409


async def test_unreachable_scratch_server_is_an_error_of_the_run_not_of_the_backup(
    make_settings: Callable[..., Settings], auth: dict[str, str], backup_dir: Path
) -> None:
    good = make_settings()
    transport = httpx.ASGITransport(app=create_app(good))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as api:
        name = (await api.post("/api/backup/create", headers=auth)).json()["filename"]
        first = await api.post(f"/api/backup/{name}/verify", headers=auth)
        assert first.json()["verified"] is True
    recorded = json.loads((backup_dir / (name + ".json")).read_text())["verification"]
    down = make_settings(verify_database_url="postgresql://postgres:pw@127.0.0.1:1/postgres")
    transport = httpx.ASGITransport(app=create_app(down))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as api:
        response = await api.post(
            f"/api/backup/{name}/verify", headers=auth, json={"restore": True}
        )
        listed = (await api.get("/api/backup/list", headers=auth)).json()["backups"][0]
    assert response.status_code == 503, response.text
    assert "127.0.0.1:1" in response.json()["error"]
    assert "pw" not in response.text
    assert "verified state is unchanged" in response.json()["details"]
    assert json.loads((backup_dir / (name + ".json")).read_text())["verification"] == recorded
    assert listed["verified"] is True
