"""/metrics parses and moves after a backup; /readyz follows the database; disk pre-flight."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pgkeep.config import Settings
from pgkeep.http.app import create_app
from pgkeep.throwaway.cluster import ThrowawayCluster
from tests.conftest import backup_files

pytestmark = pytest.mark.anyio


def _samples(text: str) -> dict[str, float]:
    """Samples by name and labels; the `target` label (one target here) left out of the key."""
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            assert family.name == "pgkeep_jobs_running" or "target" in sample.labels
            shown = {k: v for k, v in sample.labels.items() if k != "target"}
            labels = ",".join(f"{k}={v}" for k, v in sorted(shown.items()))
            values[sample.name + (f"{{{labels}}}" if labels else "")] = sample.value
    return values


async def test_metrics_parse_and_move_after_a_backup(
    api: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    before = _samples((await api.get("/metrics")).text)
    assert before["pgkeep_backups_stored"] == 0
    assert before["pgkeep_backups_total{status=succeeded}"] == 0
    assert "pgkeep_last_success_timestamp_seconds" not in before
    name = (await api.post("/api/backup/create", headers=auth)).json()["filename"]
    await api.post(f"/api/backup/{name}/verify", headers=auth)
    response = await api.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    after = _samples(response.text)
    assert after["pgkeep_backups_total{status=succeeded}"] == 1
    assert after["pgkeep_backups_stored"] == 1
    assert after["pgkeep_storage_used_bytes"] > 10_000
    assert after["pgkeep_storage_free_bytes"] > 0
    assert after["pgkeep_backup_size_bytes"] == after["pgkeep_storage_used_bytes"]
    assert after["pgkeep_last_success_timestamp_seconds"] > 1.7e9
    assert (
        after["pgkeep_last_verified_timestamp_seconds"]
        >= after["pgkeep_last_success_timestamp_seconds"]
    )
    assert after["pgkeep_backup_duration_seconds"] >= 0
    assert after["pgkeep_jobs_running"] == 0
    # The verify read the backup (and the download route would): counted by store, named.
    assert (
        after["pgkeep_store_read_bytes_total{store=primary}"] >= after["pgkeep_backup_size_bytes"]
    )


async def test_metrics_failed_backup_counts(
    make_settings: Callable[..., Settings], auth: dict[str, str]
) -> None:
    settings = make_settings(database_url="postgresql://postgres:x@127.0.0.1:1/gone")
    transport = httpx.ASGITransport(app=create_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as api:
        assert (await api.post("/api/backup/create", headers=auth)).status_code == 500
        after = _samples((await api.get("/metrics")).text)
    assert after["pgkeep_backups_total{status=failed}"] == 1


async def test_metrics_can_require_a_token_or_a_network(
    make_settings: Callable[..., Settings], auth: dict[str, str]
) -> None:
    token_app = create_app(make_settings(metrics_token="m" * 40))
    net_app = create_app(make_settings(metrics_allow="10.0.0.0/8"))
    for app, denied in ((token_app, 401), (net_app, 403)):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as api:
            response = await api.get("/metrics")
            assert response.status_code == denied
            assert set(response.json()) == {"error", "details"}
            if app is token_app:
                ok = await api.get("/metrics", headers={"Authorization": "Bearer " + "m" * 40})
                assert ok.status_code == 200
                owner = await api.get("/metrics", headers=auth)  # an OWNER token opens it too
                assert owner.status_code == 200


async def test_readyz_turns_503_when_the_database_stops_and_200_when_it_returns(
    make_settings: Callable[..., Settings], pg_bin_dirs: dict[int, Path], tmp_path: Path
) -> None:
    own = ThrowawayCluster(pg_bin_dirs[max(pg_bin_dirs)])
    own.start()
    try:
        settings = make_settings(database_url=own.url(), pg_bin_dir=own.bin_dir)
        app = create_app(settings)
        app.state.runtime.service().ready_ttl = 0  # no cache: each call checks again
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as api:
            ready = await api.get("/readyz")
            assert ready.status_code == 200, ready.text
            assert {c["name"] for c in ready.json()["checks"]} >= {
                "database",
                "storage",
                "free_space",
            }
            own._run("pg_ctl", "-D", "data", "-w", "-m", "fast", "stop")
            down = await api.get("/readyz")
            assert down.status_code == 503
            body = down.json()
            assert body["error"] == "not ready"
            assert body["details"] == "failing: database"
            assert (await api.get("/healthz")).status_code == 200  # liveness is not readiness
            options = f"-p {own.port} -k {own.base} -c listen_addresses=127.0.0.1"
            own._run("pg_ctl", "-D", "data", "-l", "server.log", "-w", "-o", options, "start")
            assert (await api.get("/readyz")).status_code == 200
    finally:
        own.stop()


async def test_readyz_free_space_floor(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(min_free_bytes=10**18)
    transport = httpx.ASGITransport(app=create_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as api:
        response = await api.get("/readyz")
    assert response.status_code == 503
    assert response.json()["details"] == "failing: free_space"


async def test_disk_preflight_refuses_with_507_and_writes_nothing(
    make_settings: Callable[..., Settings], auth: dict[str, str], backup_dir: Path
) -> None:
    settings = make_settings(min_free_bytes=10**18)
    transport = httpx.ASGITransport(app=create_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as api:
        response = await api.post("/api/backup/create", headers=auth)
    assert response.status_code == 507
    assert response.json()["error"].startswith("not enough free space to back up 'db_")
    assert "PGKEEP_MIN_FREE_BYTES" in response.json()["error"]
    assert backup_files(backup_dir) == []


async def test_readyz_shows_details_only_to_owners_or_the_metrics_token(
    make_settings: Callable[..., Settings], auth: dict[str, str], cluster: ThrowawayCluster
) -> None:
    settings = make_settings(metrics_token="m" * 40)
    transport = httpx.ASGITransport(app=create_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as api:
        anonymous = (await api.get("/readyz")).json()
        forged = (await api.get("/readyz", headers={"Authorization": "Bearer x.y.z"})).json()
        owner = (await api.get("/readyz", headers=auth)).json()
        scraper = (await api.get("/readyz", headers={"Authorization": "Bearer " + "m" * 40})).json()
    for body in (anonymous, forged):
        assert all(set(c) == {"name", "ok"} for c in body["checks"])
        text = str(body)
        for leak in ("PostgreSQL", "pg_dump", "bytes free", str(cluster.port), "/"):
            assert leak not in text, leak
    for body in (owner, scraper):
        database = next(c for c in body["checks"] if c["name"] == "database")
        assert "pg_dump" in database["details"]


async def test_readyz_under_load_never_reports_false_failures(
    make_settings: Callable[..., Settings], backup_dir: Path
) -> None:
    """100 parallel calls once gave a third false 503s: probes shared one file name."""
    transport = httpx.ASGITransport(app=create_app(make_settings()))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as api:
        responses = await asyncio.gather(*(api.get("/readyz") for _ in range(100)))
    assert [r.status_code for r in responses] == [200] * 100
    assert not [p for p in backup_dir.iterdir() if "probe" in p.name]
