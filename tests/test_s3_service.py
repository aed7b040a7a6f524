"""pgkeep with its backups in S3 (a real SeaweedFS): the API end to end, copies, fallbacks,
and a store that goes away and comes back."""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from pgkeep.config import Settings
from pgkeep.config_file import StoreConfig
from pgkeep.errors import ConfigError
from pgkeep.http.app import create_app
from pgkeep.storage import s3
from pgkeep.throwaway.cluster import ThrowawayCluster
from pgkeep.throwaway.s3 import ThrowawayS3

pytestmark = pytest.mark.anyio


def _bucket(server: ThrowawayS3) -> str:
    return server.create_bucket("b-" + secrets.token_hex(6))


@pytest.fixture
def s3_env(s3_server: ThrowawayS3, monkeypatch: pytest.MonkeyPatch) -> ThrowawayS3:
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    return s3_server


def _s3_settings(
    make_settings: Callable[..., Settings], server: ThrowawayS3, **extra: object
) -> Settings:
    return make_settings(
        storage_url=f"s3://{_bucket(server)}/backups",
        s3_endpoint_url=server.endpoint,
        s3_region="us-east-1",
        **extra,
    )


def _client(settings: Settings) -> httpx.AsyncClient:
    app = create_app(settings)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_backups_in_s3_end_to_end(
    make_settings: Callable[..., Settings],
    s3_env: ThrowawayS3,
    auth: dict[str, str],
    cluster: ThrowawayCluster,
    backup_dir: Path,
) -> None:
    settings = _s3_settings(make_settings, s3_env, default_compression="zstd")
    bucket = str(settings.storage_url).split("/")[2]
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://t") as api,
    ):
        created = (await api.post("/api/backup/create", headers=auth)).json()
        name = created["filename"]
        keys = [o["Key"] for o in s3_env.client().list_objects_v2(Bucket=bucket)["Contents"]]
        assert sorted(keys) == [f"backups/{name}", f"backups/{name}.json"]
        assert not [p for p in backup_dir.glob("backup-*")]  # nothing on local disk
        listed = (await api.get("/api/backup/list", headers=auth)).json()
        assert [b["filename"] for b in listed["backups"]] == [name]
        whole = await api.get(f"/api/backup/download/{name}", headers=auth)
        assert hashlib.sha256(whole.content).hexdigest() == created["sha256"]
        assert whole.headers["x-pgkeep-source"] == "primary"
        part = await api.get(f"/api/backup/download/{name}", headers={**auth, "Range": "bytes=4-9"})
        assert (part.status_code, part.content) == (206, whole.content[4:10])
        assert part.headers["etag"] == whole.headers["etag"]
        verify = await api.post(f"/api/backup/{name}/verify", headers=auth, json={"restore": True})
        assert verify.json()["verified"] is True, verify.text
        restored = await api.post(
            f"/api/backup/{name}/restore", headers=auth, json={"targetDatabase": "from_s3"}
        )
        assert restored.status_code == 200, restored.text
        cluster.execute("DROP DATABASE from_s3 WITH (FORCE)")
        assert (await api.get("/readyz", headers=auth)).json()["status"] == "ready"
        assert (await api.delete(f"/api/backup/{name}", headers=auth)).status_code == 200
        left = s3_env.client().list_objects_v2(Bucket=bucket, Prefix="backups/")
        # Only the delete's signed tombstone (jobs are recorded in PGKEEP_STATE_DIR).
        assert [o["Key"] for o in left.get("Contents", [])] == [f"backups/{name}.deleted"]


def _wait(predicate: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached")


async def test_copies_and_falling_back_to_them(
    make_settings: Callable[..., Settings],
    s3_env: ThrowawayS3,
    auth: dict[str, str],
    cluster: ThrowawayCluster,
) -> None:
    copies = _bucket(s3_env)
    settings = _s3_settings(make_settings, s3_env, copy_to=f"s3://{copies}/offsite")
    primary = str(settings.storage_url).split("/")[2]
    client = s3_env.client()
    async with _client(settings) as api:
        name = (await api.post("/api/backup/create", headers=auth)).json()["filename"]

        def copied() -> bool:
            listed = client.list_objects_v2(Bucket=copies, Prefix="offsite/").get("Contents", [])
            return len(listed) == 2

        _wait(copied)
        [item] = (await api.get("/api/backup/list", headers=auth)).json()["backups"]
        assert item["copies"] == [
            {"store": f"s3://{copies}/offsite", "present": True, "verified": True}
        ]
        original = client.get_object(Bucket=primary, Key=f"backups/{name}")["Body"].read()
        # Damaged in the primary store: verify and restore use the copy, and say so.
        client.put_object(Bucket=primary, Key=f"backups/{name}", Body=original[:-10] + b"x" * 10)
        verify = await api.post(f"/api/backup/{name}/verify", headers=auth, json={"restore": True})
        body = verify.json()
        assert body["verified"] is True, body
        assert body["source"] == verify.headers["x-pgkeep-source"] == f"copy:s3://{copies}/offsite"
        assert body["checks"][0]["name"] == "primary"
        assert body["checks"][0]["ok"] is False
        restore = await api.post(
            f"/api/backup/{name}/restore", headers=auth, json={"targetDatabase": "from_copy"}
        )
        assert restore.status_code == 200, restore.text
        assert restore.headers["x-pgkeep-source"].startswith("copy:")
        cluster.execute("DROP DATABASE from_copy WITH (FORCE)")
        # Gone from the primary store: the download comes from the copy.
        client.delete_object(Bucket=primary, Key=f"backups/{name}")
        download = await api.get(f"/api/backup/download/{name}", headers=auth)
        assert download.status_code == 200
        assert download.content == original
        assert download.headers["x-pgkeep-source"] == f"copy:s3://{copies}/offsite"


async def test_a_copy_store_that_is_down_never_fails_the_backup_and_catches_up(
    make_settings: Callable[..., Settings],
    s3_env: ThrowawayS3,
    auth: dict[str, str],
    backup_dir: Path,
) -> None:
    """The copy store is a second SeaweedFS (same credentials), killed during the create."""
    with ThrowawayS3(s3_env.access_key, s3_env.secret_key) as offsite:
        offsite.create_bucket("offsite")
        settings = make_settings(
            stores={"far": StoreConfig(url="s3://offsite/x", endpoint_url=offsite.endpoint)},
            copy_to="far",
            copy_backoff_seconds=0.01,
        )
        offsite.pause()
        audit = backup_dir / "pgkeep-audit.jsonl"

        def copies(result: str) -> list[dict[str, object]]:
            entries = [json.loads(line) for line in audit.read_text().splitlines()]
            return [e for e in entries if e["action"] == "copy" and e["result"] == result]

        async with _client(settings) as api:
            created = await api.post("/api/backup/create", headers=auth)
            assert created.status_code == 200
            first = created.json()["filename"]
            _wait(lambda: bool(copies("failed")))
            [alert] = copies("failed")
            assert alert["backup"] == first
            assert "cannot reach the store s3://offsite/x" in str(alert["error"])
            assert (backup_dir / first).exists()  # the primary is untouched
            [item] = (await api.get("/api/backup/list", headers=auth)).json()["backups"]
            assert item["copies"] == [{"store": "far", "present": None, "verified": False}]

            offsite.resume()  # back: the next backup's copies bring the first one along
            second = (await api.post("/api/backup/create", headers=auth)).json()["filename"]
            _wait(lambda: len(copies("succeeded")) == 2)
            assert [e["backup"] for e in copies("succeeded")] == [first, second]
            listed = (await api.get("/api/backup/list", headers=auth)).json()["backups"]
            assert all(
                b["copies"] == [{"store": "far", "present": True, "verified": True}] for b in listed
            )
            keys = offsite.client().list_objects_v2(Bucket="offsite")["Contents"]
            assert sorted(k["Key"] for k in keys) == sorted(
                f"x/{n}{ext}" for n in (first, second) for ext in ("", ".json")
            )


@pytest.fixture
def own_s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[ThrowawayS3]:
    with ThrowawayS3() as server:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", server.access_key)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", server.secret_key)
        yield server


async def test_a_store_that_goes_away_and_comes_back(
    make_settings: Callable[..., Settings],
    own_s3: ThrowawayS3,
    auth: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(s3, "LIST_TTL_SECONDS", 0.1)  # listings are reused 5 s by default
    settings = _s3_settings(make_settings, own_s3)
    app = create_app(settings)
    app.state.runtime.service().ready_ttl = 0
    async with _client(settings) as api:
        api._transport = httpx.ASGITransport(app=app)  # the same app, readiness uncached
        name = (await api.post("/api/backup/create", headers=auth)).json()["filename"]
        own_s3.pause()
        await asyncio.sleep(0.2)
        listed = await api.get("/api/backup/list", headers=auth)
        assert listed.status_code == 503
        assert "cannot reach the store s3://" in listed.json()["error"]
        assert (await api.get(f"/api/backup/download/{name}", headers=auth)).status_code == 503
        assert (await api.get("/readyz")).status_code == 503
        failed = await api.post("/api/backup/create", headers=auth)
        assert failed.status_code == 503
        own_s3.resume()
        assert (await api.get("/api/backup/list", headers=auth)).json()["count"] == 1
        again = await api.post("/api/backup/create", headers=auth)
        assert again.status_code == 200, again.text
        assert (await api.get("/readyz")).status_code == 200


async def test_wrong_credentials_or_bucket_stop_the_start(
    make_settings: Callable[..., Settings],
    s3_env: ThrowawayS3,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-" + secrets.token_hex(8))
    app = create_app(_s3_settings(make_settings, s3_env))
    with pytest.raises(ConfigError) as caught:
        async with app.router.lifespan_context(app):
            pass
    assert "refused the credentials" in caught.value.message
    assert s3_env.endpoint in caught.value.message
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_env.secret_key)
    missing = create_app(
        make_settings(
            storage_url="s3://bucket-that-is-not-there/x",
            s3_endpoint_url=s3_env.endpoint,
            s3_region="us-east-1",
        )
    )
    with pytest.raises(ConfigError, match=r"bucket-that-is-not-there.* does not exist"):
        async with missing.router.lifespan_context(missing):
            pass


def test_stores_refuse_credentials_in_urls_and_copies_onto_themselves(
    make_settings: Callable[..., Settings], s3_env: ThrowawayS3
) -> None:
    with pytest.raises(ConfigError, match="credentials or options do not belong"):
        create_app(make_settings(storage_url="s3://AKIAX:s3cr3t@bucket/x"))
    with pytest.raises(ConfigError, match="is the primary store itself"):
        create_app(
            make_settings(
                storage_url="s3://pgkeep-tests/same",
                copy_to="s3://pgkeep-tests/same",
                s3_endpoint_url=s3_env.endpoint,
            )
        )
    with pytest.raises(ConfigError) as caught:
        make_settings(
            stores={"far": {"url": "s3://b/x", "endpoint_url": "https://k:s3cr3t@h"}},
        )
    assert "s3cr3t" not in caught.value.message
