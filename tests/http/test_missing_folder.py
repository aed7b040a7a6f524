"""A target's backup folder removed (or its mount gone) under a running server: that target
reads as failing with the cause, its own routes answer the cause (the spec's 500), and the
fleet's views (targets, storage, metrics) and the other target are untouched."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from pgkeep import tokens, wiring
from pgkeep.config import load_settings
from pgkeep.http.app import create_app
from pgkeep.throwaway.cluster import ThrowawayCluster
from tests.conftest import SECRET

pytestmark = pytest.mark.anyio


@pytest.fixture
async def api(
    cluster: ThrowawayCluster, database: str, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    path = tmp_path / "two.toml"
    path.write_text(
        f'jwt_secret = "{SECRET}"\nbackup_dir = "{tmp_path / "store"}"\n'
        f'pg_bin_dir = "{cluster.bin_dir}"\naudit_log = "{tmp_path / "audit.jsonl"}"\n'
        f'[targets.shop]\ndatabase_url = "{database}"\n'
        f'[targets.crm]\ndatabase_url = "{database}"\n'
    )
    settings = load_settings(config=path)
    app = create_app(settings, wiring.build(settings))
    owner = tokens.mint(settings, sub="alice", role="OWNER", ttl=timedelta(hours=1))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://pgkeep.test",
            headers={"Authorization": f"Bearer {owner}"},
            timeout=60,
        ) as client:
            yield client


async def test_a_removed_target_folder_is_a_failing_target_not_a_500(
    api: httpx.AsyncClient, tmp_path: Path
) -> None:
    for target in ("shop", "crm"):
        assert (await api.post(f"/api/backup/create?target={target}")).status_code == 200
    folders = [p for p in (tmp_path / "store").iterdir() if p.is_dir() and p.name == "crm"]
    assert folders, sorted(p.name for p in (tmp_path / "store").iterdir())
    shutil.rmtree(folders[0])
    answers = {
        "targets": await api.get("/api/backup/targets"),
        "storage": await api.get("/api/backup/storage"),
        "list": await api.get("/api/backup/list?target=crm"),
        "create": await api.post("/api/backup/create?target=crm"),
        "metrics": await api.get("/metrics"),
        "shop": await api.get("/api/backup/list?target=shop"),
    }
    statuses = {name: a.status_code for name, a in answers.items()}
    assert statuses["targets"] == statuses["storage"] == statuses["metrics"] == 200, statuses
    assert statuses["shop"] == 200
    assert answers["shop"].json()["count"] == 1
    for name in ("list", "create"):  # the spec's 500, naming the cause
        assert statuses[name] == 500
        body = answers[name].json()
        assert "cannot read backup directory" in body["error"], body
        assert "No such file or directory" in body["error"], body
    metrics = answers["metrics"].text
    assert 'pgkeep_store_readable{target="crm"} 0.0' in metrics
    assert 'pgkeep_store_readable{target="shop"} 1.0' in metrics
    assert 'pgkeep_backups_stored{target="shop"} 1.0' in metrics
    rows = {r["name"]: r for r in answers["targets"].json()["targets"]}
    assert rows["shop"]["status"] == "ok"
    assert rows["crm"]["status"] != "ok"
