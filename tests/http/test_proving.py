"""Formats on create, verify and restore over HTTP, with damaged files and failing restores."""

from __future__ import annotations

import gzip
from pathlib import Path

import httpx
import psycopg
import pytest
import zstandard

from pgkeep.throwaway.cluster import ThrowawayCluster
from tests.conftest import backup_files

pytestmark = pytest.mark.anyio


async def _create(
    api: httpx.AsyncClient, auth: dict[str, str], **body: object
) -> dict[str, object]:
    response = await api.post("/api/backup/create", headers=auth, json=body or None)
    assert response.status_code == 200, response.text
    result: dict[str, object] = response.json()
    return result


def _databases(cluster: ThrowawayCluster) -> set[str]:
    with psycopg.connect(cluster.url()) as conn:
        return {str(r[0]) for r in conn.execute("SELECT datname FROM pg_database").fetchall()}


def _flip(path: Path, at: float = 0.5) -> None:
    data = bytearray(path.read_bytes())
    i = int(len(data) * at)
    data[i : i + 8] = bytes(b ^ 0xFF for b in data[i : i + 8])
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize(
    ("body", "suffix", "content_type", "decode"),
    [
        ({}, ".sql", "application/sql", lambda b: b),
        ({"compression": "gzip"}, ".sql.gz", "application/gzip", gzip.decompress),
        (
            {"compression": "zstd", "level": 3},
            ".sql.zst",
            "application/zstd",
            lambda b: zstandard.ZstdDecompressor().decompressobj().decompress(b),
        ),
        ({"format": "custom"}, ".dump", "application/octet-stream", None),
        (
            {"format": "custom", "compression": "gzip", "level": 1},
            ".dump",
            "application/octet-stream",
            None,
        ),
    ],
)
async def test_create_formats_and_download_types(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    body: dict[str, object],
    suffix: str,
    content_type: str,
    decode: object,
) -> None:
    created = await _create(api, auth, **body)
    name = str(created["filename"])
    assert name.endswith(suffix)
    assert created["format"] == body.get("format", "plain")
    download = await api.get(f"/api/backup/download/{name}", headers=auth)
    assert download.headers["content-type"] == content_type
    if callable(decode):
        assert decode(download.content).startswith(b"--\n-- PostgreSQL database dump")
    else:
        assert download.content.startswith(b"PGDMP")


@pytest.mark.parametrize(
    "body",
    [
        {"format": "custom", "compression": "zstd"},
        {"compression": "gzip", "level": 42},
        {"compression": "none", "level": 3},
        {"format": "tar"},
        {"compression": "lz4"},
        {"restore": True},
    ],
)
async def test_create_refuses_bad_options(
    api: httpx.AsyncClient, auth: dict[str, str], body: dict[str, object], backup_dir: Path
) -> None:
    response = await api.post("/api/backup/create", headers=auth, json=body)
    assert response.status_code == 400, response.text
    assert set(response.json()) == {"error", "details"}
    assert backup_files(backup_dir) == []


async def test_verify_a_good_backup_and_record_it(
    api: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    name = (await _create(api, auth, compression="zstd"))["filename"]
    response = await api.post(f"/api/backup/{name}/verify", headers=auth)
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True
    assert body["verified"] is True
    assert [c["name"] for c in body["checks"]] == ["manifest", "sha256", "readable"]
    assert all(c["ok"] for c in body["checks"])
    listed = (await api.get("/api/backup/list", headers=auth)).json()["backups"][0]
    assert listed["verifiedAt"] == body["verifiedAt"]
    assert listed["verified"] is True


async def test_verify_with_test_restore(
    api: httpx.AsyncClient, auth: dict[str, str], cluster: ThrowawayCluster
) -> None:
    before = _databases(cluster)
    name = (await _create(api, auth, compression="gzip"))["filename"]
    response = await api.post(f"/api/backup/{name}/verify", headers=auth, json={"restore": True})
    body = response.json()
    assert body["verified"] is True, body
    restore_check = body["checks"][-1]
    assert restore_check["name"] == "restore"
    assert "3 tables, 5600 rows, match the manifest" in restore_check["details"]
    assert _databases(cluster) == before


@pytest.mark.parametrize(
    ("body", "damage", "failed"),
    [
        ({}, _flip, {"sha256"}),
        ({"compression": "gzip"}, _flip, {"sha256", "readable"}),
        ({"compression": "zstd"}, _truncate, {"sha256", "readable"}),
        # pg_restore never reads an archive whose checksum is wrong: no archive check.
        ({"format": "custom"}, _truncate, {"sha256"}),
        ({"format": "custom", "compression": "gzip"}, _flip, {"sha256"}),
    ],
)
async def test_damaged_backups_fail_verify_and_are_refused_by_restore(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    backup_dir: Path,
    cluster: ThrowawayCluster,
    body: dict[str, object],
    damage: object,
    failed: set[str],
) -> None:
    name = str((await _create(api, auth, **body))["filename"])
    assert callable(damage)
    damage(backup_dir / name)
    verify = (await api.post(f"/api/backup/{name}/verify", headers=auth)).json()
    assert verify["verified"] is False
    assert {c["name"] for c in verify["checks"] if not c["ok"]} >= failed
    assert "archive" not in {c["name"] for c in verify["checks"]}
    before = _databases(cluster)
    restore = await api.post(
        f"/api/backup/{name}/restore", headers=auth, json={"targetDatabase": "from_damaged"}
    )
    assert restore.status_code == 422, restore.text
    assert "nothing was restored" in restore.json()["error"]
    assert _databases(cluster) == before


async def test_restore_into_new_database_then_conflict_then_replace_its_source(
    api: httpx.AsyncClient, auth: dict[str, str], cluster: ThrowawayCluster, database: str
) -> None:
    source = database.rsplit("/", 1)[1]
    name = (await _create(api, auth, format="custom"))["filename"]
    url = f"/api/backup/{name}/restore"
    first = await api.post(url, headers=auth, json={"targetDatabase": "shop_copy"})
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["targetDatabase"] == "shop_copy"
    assert body["durationMs"] >= 0
    assert {t["table"]: t["restoredRows"] for t in body["tables"]} == {
        "public.customer": 500,
        "public.product": 100,
        "public.purchase": 5000,
    }
    assert all(t["ok"] and t["expectedRows"] == t["restoredRows"] for t in body["tables"])
    try:
        again = await api.post(url, headers=auth, json={"targetDatabase": "shop_copy"})
        assert again.status_code == 409
        other = await api.post(
            url,
            headers=auth,
            json={"targetDatabase": "shop_copy", "replace": True, "confirm": "shop_copy"},
        )
        assert other.status_code == 400  # not the backup's source, not allowed
        assert "may only replace database" in other.json()["error"]
        unconfirmed = await api.post(
            url, headers=auth, json={"targetDatabase": source, "replace": True}
        )
        assert unconfirmed.status_code == 400
        assert "confirmed" in unconfirmed.json()["error"]
        assert "--confirm" in unconfirmed.json()["details"]
        cluster.execute("DELETE FROM purchase", source)
        replaced = await api.post(
            url, headers=auth, json={"targetDatabase": source, "replace": True, "confirm": source}
        )
        assert replaced.status_code == 200, replaced.text
        with psycopg.connect(cluster.url(source)) as conn:
            assert conn.execute("SELECT count(*) FROM purchase").fetchone() == (5000,)
    finally:
        cluster.execute("DROP DATABASE IF EXISTS shop_copy WITH (FORCE)")


async def test_failed_restore_leaves_no_database(
    api: httpx.AsyncClient, auth: dict[str, str], cluster: ThrowawayCluster, database: str
) -> None:
    dbname = database.rsplit("/", 1)[1]
    role = f"gone_{dbname}"
    cluster.execute(f"CREATE ROLE {role}; ALTER TABLE product OWNER TO {role}", dbname)
    name = (await _create(api, auth))["filename"]
    cluster.execute(f"ALTER TABLE product OWNER TO postgres; DROP ROLE {role}", dbname)
    before = _databases(cluster)
    response = await api.post(
        f"/api/backup/{name}/restore", headers=auth, json={"targetDatabase": "never_there"}
    )
    assert response.status_code == 500
    body = response.json()
    assert body["error"].startswith("psql failed with exit code 3 restoring into database")
    assert f'role "{role}" does not exist' in body["details"]
    assert cluster.password not in response.text
    assert _databases(cluster) == before


@pytest.mark.parametrize(
    "target",
    ["", "bad name", "a;drop", "template1", "x" * 64, "1abc", "postgres", "pgkeep_verify_x", "db٣"],
)
async def test_restore_refuses_bad_target_names(
    api: httpx.AsyncClient, auth: dict[str, str], target: str
) -> None:
    name = (await _create(api, auth))["filename"]
    response = await api.post(
        f"/api/backup/{name}/restore", headers=auth, json={"targetDatabase": target}
    )
    assert response.status_code == 400
    body = response.json()
    # Length is checked by the request schema, the rest by pgkeep; both name the field.
    assert "cannot restore into database" in body["error"] or "targetDatabase" in body["details"]


async def test_restore_needs_a_target(api: httpx.AsyncClient, auth: dict[str, str]) -> None:
    name = (await _create(api, auth))["filename"]
    response = await api.post(f"/api/backup/{name}/restore", headers=auth, json={})
    assert response.status_code == 400
    assert "targetDatabase" in response.json()["details"]


async def test_backup_without_manifest_lists_and_cannot_verify(
    api: httpx.AsyncClient, auth: dict[str, str], backup_dir: Path
) -> None:
    name = str((await _create(api, auth))["filename"])
    copy = "backup-2001-02-03T04-05-06.sql"
    (backup_dir / copy).write_bytes((backup_dir / name).read_bytes())
    listed = {
        b["filename"]: b
        for b in (await api.get("/api/backup/list", headers=auth)).json()["backups"]
    }
    assert listed[copy]["hasManifest"] is False
    assert listed[copy]["sha256"] is None
    assert listed[name]["hasManifest"] is True
    assert (listed[copy]["signed"], listed[copy]["trust"]) == (False, "no manifest")
    verify = (await api.post(f"/api/backup/{copy}/verify", headers=auth)).json()
    assert verify["verified"] is False
    assert verify["checks"][:2] == [
        {
            "name": "manifest",
            "ok": False,
            "details": "no manifest: never restored or test-restored",
        },
        {"name": "sha256", "ok": False, "details": "nothing to compare with: no manifest"},
    ]
    assert verify["checks"][2]["ok"] is True


@pytest.mark.parametrize("action", ["verify", "restore"])
async def test_verify_and_restore_validate_names(
    api: httpx.AsyncClient, auth: dict[str, str], action: str
) -> None:
    body = {"targetDatabase": "x"} if action == "restore" else {}
    for attempt in ("..%2F..%2Fetc%2Fpasswd", "backup-2001-01-01T00-00-00.sql.json"):
        response = await api.post(f"/api/backup/{attempt}/{action}", headers=auth, json=body)
        assert response.status_code == 400, (attempt, response.text)
    missing = await api.post(
        f"/api/backup/backup-2001-01-01T00-00-00.sql/{action}", headers=auth, json=body
    )
    assert missing.status_code == 404
    unauth = await api.post(f"/api/backup/backup-2001-01-01T00-00-00.sql/{action}")
    assert unauth.status_code == 401
