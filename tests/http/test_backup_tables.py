"""GET /api/backup/{name}/tables on the real app and a real dump of the sample shop: the
signed manifest's tables and schemas; 404 for an unknown backup, 409 for one without
signed row counts; and an async restore's job carrying what it restored."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from pgkeep.config import Settings
from pgkeep.throwaway.cluster import ThrowawayCluster
from tests.conftest import plant_backup

pytestmark = pytest.mark.anyio
SHOP = {"public.customer": 500, "public.product": 100, "public.purchase": 5000}


async def test_backup_tables_lists_the_manifests_tables_and_schemas(
    api: httpx.AsyncClient, auth: dict[str, str], settings: Settings
) -> None:
    created = await api.post("/api/backup/create", headers=auth)
    assert created.status_code == 200, created.text
    name = created.json()["filename"]
    answer = await api.get(f"/api/backup/{name}/tables", headers=auth)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["success"] is True
    assert body["filename"] == name
    assert {t["name"]: t["rows"] for t in body["tables"]} == SHOP
    assert [t["name"] for t in body["tables"]] == sorted(SHOP)
    assert body["schemas"] == ["public"]
    assert body["count"] == 3

    missing = await api.get("/api/backup/backup-2001-01-01T00-00-00.sql/tables", headers=auth)
    assert missing.status_code == 404
    assert set(missing.json()) == {"error", "details"}
    bad = await api.get("/api/backup/..%2Fetc%2Fpasswd/tables", headers=auth)
    assert bad.status_code == 400
    nobody = await api.get(f"/api/backup/{name}/tables")
    assert nobody.status_code == 401

    planted = plant_backup(settings, datetime.now(UTC) - timedelta(hours=1))  # no row counts
    counted = await api.get(f"/api/backup/{planted}/tables", headers=auth)
    assert counted.status_code == 409
    assert "no row counts" in counted.json()["error"]
    unsigned = plant_backup(settings, datetime.now(UTC) - timedelta(hours=2), signed=False)
    refused = await api.get(f"/api/backup/{unsigned}/tables", headers=auth)
    assert refused.status_code == 409
    assert "no signed manifest" in refused.json()["error"]


async def test_a_table_restore_job_carries_its_result(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    cluster: ThrowawayCluster,
    make_settings: Callable[..., Settings],
) -> None:
    """The console restores with ?async=true and shows the dropped foreign keys: the job,
    its events' end and GET /jobs/{id} carry the restore's answer as `result`."""
    name = (await api.post("/api/backup/create", headers=auth)).json()["filename"]
    body = {"targetDatabase": "tables_only_purchase", "tables": ["public.purchase"]}
    try:
        started = await api.post(f"/api/backup/{name}/restore?async=true", headers=auth, json=body)
        assert started.status_code == 202, started.text
        assert started.json()["job"]["result"] is None
        job_id = started.json()["job"]["id"]
        deadline = time.monotonic() + 60
        while (job := (await api.get(f"/api/backup/jobs/{job_id}", headers=auth)).json()["job"])[
            "status"
        ] in ("queued", "running"):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert job["status"] == "succeeded", job
        result = job["result"]
        assert result["targetDatabase"] == "tables_only_purchase"
        assert [(t["table"], t["restoredRows"], t["ok"]) for t in result["tables"]] == [
            ("public.purchase", 5000, True)
        ]
        assert sorted(k["references"] for k in result["droppedForeignKeys"]) == [
            "public.customer",
            "public.product",
        ]
        events = await api.get(f"/api/backup/jobs/{job_id}/events", headers=auth)
        assert '"droppedForeignKeys"' in events.text
        creates = (await api.get("/api/backup/jobs?kind=create", headers=auth)).json()["jobs"]
        assert {j["result"] for j in creates} == {None}
    finally:
        cluster.execute('DROP DATABASE IF EXISTS "tables_only_purchase" WITH (FORCE)')
