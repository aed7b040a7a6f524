"""Delete removes a backup from every store that holds it, or says it could not: found by an
operator, a delete answered "deleted" and left the copies, so the same name still
downloaded (200, from a copy) while list and verify said it did not exist."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from pgkeep.config import load_settings
from pgkeep.http.app import create_app
from pgkeep.throwaway.cluster import ThrowawayCluster
from pgkeep.throwaway.s3 import ThrowawayS3
from tests.conftest import ACTOR, SECRET

pytestmark = pytest.mark.anyio


def _until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, "not reached"
        time.sleep(0.05)


async def test_a_delete_removes_the_backup_from_every_store(
    tmp_path: Path, cluster: ThrowawayCluster, database: str, auth: dict[str, str]
) -> None:
    copies = tmp_path / "copies"
    settings = load_settings(
        database_url=database,
        jwt_secret=SECRET,
        backup_dir=tmp_path / "primary",
        pg_bin_dir=cluster.bin_dir,
        copy_to=f"file://{copies}",
    )
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://t") as api,
    ):
        runtime = app.state.runtime
        name = runtime.service().creating.create(None, ACTOR).name
        _until(lambda: (copies / name).exists() and (copies / f"{name}.json").exists())
        deleted = await api.delete(f"/api/backup/{name}", headers=auth)
        download = await api.get(f"/api/backup/download/{name}", headers=auth)
        again = await api.delete(f"/api/backup/{name}", headers=auth)
    assert deleted.status_code == 200, deleted.text
    body = deleted.json()
    assert body["success"] is True
    assert body["filename"] == name
    assert body["stores"][0] == "primary"
    assert [s.split(":")[0] for s in body["stores"]] == ["primary", "copy"]
    assert download.status_code == 404  # never from the copy: it is gone there too
    assert again.status_code == 404
    assert not (copies / name).exists()
    assert not (tmp_path / "primary" / name).exists()
    assert (tmp_path / "primary" / f"{name}.deleted").exists()  # the signed tombstone
    removals = [e for e in runtime.audit.read() if e.get("action") == "delete"]
    assert [e["result"] for e in removals].count("succeeded") == 2  # each store's, audited


async def test_a_delete_that_cannot_reach_a_copy_store_is_partial_and_never_served(
    tmp_path: Path,
    cluster: ThrowawayCluster,
    database: str,
    auth: dict[str, str],
    s3_server: ThrowawayS3,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bucket = s3_server.create_bucket("delete-" + secrets.token_hex(4))
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    settings = load_settings(
        database_url=database,
        jwt_secret=SECRET,
        backup_dir=tmp_path / "primary",
        pg_bin_dir=cluster.bin_dir,
        copy_to=f"s3://{bucket}/copies",
    )
    client = s3_server.client()

    def copied(name: str) -> bool:
        keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]
        return f"copies/{name}" in keys and f"copies/{name}.json" in keys

    app = create_app(settings)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://t") as api,
    ):
        name = app.state.runtime.service().creating.create(None, ACTOR).name
        _until(lambda: copied(name))
        s3_server.pause()
        try:
            partial = await api.delete(f"/api/backup/{name}", headers=auth)
            download = await api.get(f"/api/backup/download/{name}", headers=auth)
        finally:
            s3_server.resume()
        assert copied(name)  # still there: the delete said so
        download_after = await api.get(f"/api/backup/download/{name}", headers=auth)
        finished = await api.delete(f"/api/backup/{name}", headers=auth)
    assert partial.status_code == 502, partial.text
    body = partial.json()
    assert body["error"] == "backup partly deleted"
    assert body["details"].startswith("not removed from copy:")
    assert body["stores"] == ["primary"]
    assert download.status_code == 404  # a tombstone: the copy is never served
    assert download_after.status_code == 404
    assert finished.status_code == 200, finished.text
    assert [s.split(":")[0] for s in finished.json()["stores"]] == ["copy"]
    assert not copied(name)
