"""The spec's contract, route by route, against the real app, real pg_dump and a real server."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from pgkeep.config import Settings
from pgkeep.http.app import create_app
from pgkeep.throwaway.cluster import ThrowawayCluster
from tests.blocking import table_locked, wait_for_pg_dump_waiting
from tests.conftest import backup_files

pytestmark = pytest.mark.anyio
ISO_MS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
ADDITIVE = {
    "sizeBytes",
    "sha256",
    "format",
    "compression",
    "verifiedAt",
    "verified",
    "verifyProblem",
    "verdict",
    "hasManifest",
    "signed",
    "trust",
    "encrypted",
    "recipients",
    "drift",
    "labels",
}
LIST_ADDITIVE = ADDITIVE | {"target", "kind", "pinned", "durationMs", "verification"}
NAME = re.compile(r"backup-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}(-\d+)?\.sql")


async def _create(api: httpx.AsyncClient, auth: dict[str, str]) -> dict[str, object]:
    response = await api.post("/api/backup/create", headers=auth)
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


async def test_create_answers_the_spec(
    api: httpx.AsyncClient, auth: dict[str, str], backup_dir: Path
) -> None:
    body = await _create(api, auth)
    assert set(body) == {"success", "filename", "size", "timestamp"} | ADDITIVE
    assert body["success"] is True
    assert NAME.fullmatch(str(body["filename"]))
    assert re.fullmatch(r"\d+\.\d{2} MB", str(body["size"]))
    assert ISO_MS.fullmatch(str(body["timestamp"]))
    size = (backup_dir / str(body["filename"])).stat().st_size
    assert body["sizeBytes"] == size
    assert body["size"] == f"{size / 1024 / 1024:.2f} MB"


async def test_list_answers_the_spec_newest_first(
    api: httpx.AsyncClient, auth: dict[str, str], backup_dir: Path
) -> None:
    first = await _create(api, auth)
    second = await _create(api, auth)
    (backup_dir / "notes.txt").write_text("unrelated")
    (backup_dir / "backup-2020-01-01T00-00-00.sql.partial").write_text("half")
    (backup_dir / "backup-2020-01-01T00-00-01.sql").symlink_to("/etc/hostname")
    response = await api.get("/api/backup/list", headers=auth)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"success", "backups", "count"}
    assert body["success"] is True
    assert body["count"] == 2
    assert [b["filename"] for b in body["backups"]] == [second["filename"], first["filename"]]
    item = body["backups"][0]
    assert set(item) == {"filename", "size", "created", "modified"} | LIST_ADDITIVE
    assert (item["format"], item["compression"], item["hasManifest"]) == ("plain", "none", True)
    assert (item["signed"], item["trust"]) == (True, "signed")
    assert item["sha256"] == second["sha256"]
    assert item["verifiedAt"] is None
    assert ISO_MS.fullmatch(item["created"])
    assert ISO_MS.fullmatch(item["modified"])
    assert item["created"] == second["timestamp"]
    assert item["size"] == second["size"]


async def test_download_streams_the_file_with_headers(
    api: httpx.AsyncClient, auth: dict[str, str], backup_dir: Path
) -> None:
    name = str((await _create(api, auth))["filename"])
    response = await api.get(f"/api/backup/download/{name}", headers=auth)
    assert response.status_code == 200
    assert response.content == (backup_dir / name).read_bytes()
    h = response.headers
    assert h["content-type"] == "application/sql"
    assert h["content-disposition"] == f'attachment; filename="{name}"'
    assert h["content-length"] == str(len(response.content))
    assert h["etag"].startswith('"')
    assert h["cache-control"] == "no-store"
    assert h["x-content-type-options"] == "nosniff"
    assert h["accept-ranges"] == "bytes"


async def test_download_accepts_query_token(
    api: httpx.AsyncClient, auth: dict[str, str], token: str
) -> None:
    name = (await _create(api, auth))["filename"]
    response = await api.get(f"/api/backup/download/{name}", params={"token": token})
    assert response.status_code == 200
    assert response.content.startswith(b"--\n-- PostgreSQL database dump")
    listing = await api.get("/api/backup/list", params={"token": token})
    assert listing.status_code == 401  # only the download route takes ?token=


async def test_download_ranges(
    api: httpx.AsyncClient, auth: dict[str, str], backup_dir: Path
) -> None:
    name = str((await _create(api, auth))["filename"])
    data = (backup_dir / name).read_bytes()
    size = len(data)
    url = f"/api/backup/download/{name}"
    cases = {
        "bytes=0-9": (0, 10),
        "bytes=10-": (10, size),
        "bytes=-5": (size - 5, size),
        f"bytes=5-{size + 100}": (5, size),
    }
    for header, (start, end) in cases.items():
        response = await api.get(url, headers={**auth, "Range": header})
        assert response.status_code == 206, header
        assert response.content == data[start:end]
        assert response.headers["content-range"] == f"bytes {start}-{end - 1}/{size}"
        assert response.headers["content-length"] == str(end - start)
    past = await api.get(url, headers={**auth, "Range": f"bytes={size}-"})
    assert past.status_code == 416
    assert past.headers["content-range"] == f"bytes */{size}"
    assert set(past.json()) == {"error", "details"}
    ignored = await api.get(url, headers={**auth, "Range": "bytes=0-1,5-6"})
    assert (ignored.status_code, ignored.content) == (200, data)
    etag = ignored.headers["etag"]
    fresh = await api.get(url, headers={**auth, "Range": "bytes=0-0", "If-Range": etag})
    stale = await api.get(url, headers={**auth, "Range": "bytes=0-0", "If-Range": '"old"'})
    assert (fresh.status_code, stale.status_code) == (206, 200)


async def test_delete_answers_the_spec(
    api: httpx.AsyncClient, auth: dict[str, str], backup_dir: Path
) -> None:
    name = (await _create(api, auth))["filename"]
    response = await api.delete(f"/api/backup/{name}", headers=auth)
    assert response.status_code == 200
    assert response.json() == {
        "success": True,
        "message": "Backup deleted successfully",
        "filename": name,
        "stores": ["primary"],  # additive: where it was removed from
    }
    assert backup_files(backup_dir) == [f"{name}.deleted"]  # the manifest went, a tombstone
    again = await api.delete(f"/api/backup/{name}", headers=auth)
    assert again.status_code == 404
    assert again.json() == {"error": f"backup {name!r} not found", "details": ""}


async def test_unknown_backup_is_404_on_download(
    api: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    response = await api.get("/api/backup/download/backup-2001-01-01T00-00-00.sql", headers=auth)
    assert response.status_code == 404
    assert response.json()["error"] == "backup 'backup-2001-01-01T00-00-00.sql' not found"


TRAVERSALS = [
    "..%2F..%2Fetc%2Fpasswd",
    "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "%252e%252e%252fetc%252fpasswd",
    "..%5C..%5Cetc%5Cpasswd",
    "%2Fetc%2Fpasswd",
    "/etc/passwd",
    "backup-2024-12-09T10-30-45.sql%00.txt",
    "backup-2024-12-09T10-30-45.sql%2F..%2F..%2Fsecret",
    "sub/backup-2024-12-09T10-30-45.sql",
    "a" * 300,
    "backup-2024-12-09T10-30-45.sql.partial",
]


@pytest.mark.parametrize("attempt", TRAVERSALS)
async def test_traversal_attempts_are_400(
    api: httpx.AsyncClient, auth: dict[str, str], attempt: str, tmp_path: Path
) -> None:
    for method, path in (
        ("GET", f"/api/backup/download/{attempt}"),
        ("DELETE", f"/api/backup/{attempt}"),
    ):
        response = await api.request(method, path, headers=auth)
        assert response.status_code == 400, (method, attempt, response.text)
        body = response.json()
        if "%00" in attempt:  # refused before routing, as every control character is
            assert body == {
                "error": "Invalid request path",
                "details": "control characters in the path",
            }
            continue
        assert body["error"].startswith("invalid backup name")
        assert "expected backup-YYYY" in body["details"]


async def test_planted_symlink_is_never_followed(
    api: httpx.AsyncClient, auth: dict[str, str], backup_dir: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "outside.txt"
    secret.write_text("TOP SECRET")
    backup_dir.mkdir(exist_ok=True)
    name = "backup-2024-12-09T10-30-45.sql"
    (backup_dir / name).symlink_to(secret)
    download = await api.get(f"/api/backup/download/{name}", headers=auth)
    assert download.status_code == 404
    assert b"TOP SECRET" not in download.content
    assert (await api.delete(f"/api/backup/{name}", headers=auth)).status_code == 404
    assert secret.read_text() == "TOP SECRET"
    assert (backup_dir / name).is_symlink()


async def test_framework_errors_use_the_spec_body(
    api: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    cases = [
        (await api.get("/no/such/route"), 404),
        (await api.put("/api/backup/create", headers=auth), 405),
        (await api.get("/api/backup/create", headers=auth), 405),
        (
            await api.post(
                "/api/backup/create",
                headers={**auth, "Content-Type": "application/json"},
                content=b"{not json",
            ),
            400,
        ),
        (await api.post("/api/backup/create", headers=auth, json={"unknown": 1}), 400),
    ]
    for response, status in cases:
        assert response.status_code == status, response.text
        body = response.json()
        assert set(body) == {"error", "details"}, body
        assert body["error"]


async def test_unexpected_exception_is_500_without_traceback(
    settings: Settings, auth: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(settings)

    def broken() -> list[object]:
        raise RuntimeError("internal detail /secret/path")

    app.state.runtime.service().catalog.list = broken
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/api/backup/list", headers=auth)
    assert response.status_code == 500
    assert response.json() == {"error": "Internal server error", "details": "see the server log"}
    assert "secret/path" not in response.text
    assert "Traceback" not in response.text


async def test_pg_dump_failure_is_500_with_stderr_tail_and_no_file(
    make_settings: Callable[..., Settings],
    auth: dict[str, str],
    cluster: ThrowawayCluster,
    backup_dir: Path,
) -> None:
    settings = make_settings(
        database_url=f"postgresql://postgres:{cluster.password}@127.0.0.1:{cluster.port}/absent"
    )
    transport = httpx.ASGITransport(app=create_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.post("/api/backup/create", headers=auth)
    assert response.status_code == 500
    body = response.json()
    assert body["error"] == "cannot connect to database 'absent' at 127.0.0.1:" + str(cluster.port)
    assert 'database "absent" does not exist' in body["details"]
    assert cluster.password not in response.text
    assert backup_files(backup_dir) == []


async def test_service_starts_and_lists_while_database_is_down(
    make_settings: Callable[..., Settings], auth: dict[str, str], backup_dir: Path
) -> None:
    settings = make_settings(database_url="postgresql://postgres:pw-xyz@127.0.0.1:1/gone")
    backup_dir.mkdir()
    (backup_dir / "backup-2024-12-09T10-30-45.sql").write_text("-- kept")
    transport = httpx.ASGITransport(app=create_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        listing = await client.get("/api/backup/list", headers=auth)
        download = await client.get(
            "/api/backup/download/backup-2024-12-09T10-30-45.sql", headers=auth
        )
        create = await client.post("/api/backup/create", headers=auth)
    assert listing.json()["count"] == 1
    assert download.content == b"-- kept"
    assert create.status_code == 500
    assert create.json()["error"] == "cannot connect to database 'gone' at 127.0.0.1:1"
    assert "pw-xyz" not in create.text


async def test_concurrent_create_is_409(
    api: httpx.AsyncClient, auth: dict[str, str], database: str
) -> None:
    with table_locked(database):
        first = asyncio.create_task(api.post("/api/backup/create", headers=auth))
        await asyncio.to_thread(wait_for_pg_dump_waiting, database)
        second = await api.post("/api/backup/create", headers=auth)
    assert second.status_code == 409
    assert "already running" in second.json()["error"]
    assert (await first).status_code == 200


async def test_startup_removes_partials_with_a_log_line(
    settings: Settings, backup_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    backup_dir.mkdir()
    (backup_dir / "backup-2024-12-09T10-30-45.sql.partial").write_text("crashed")
    app = create_app(settings)
    assert backup_files(backup_dir) != []  # building the app touches nothing
    async with app.router.lifespan_context(app):
        assert backup_files(backup_dir) == []
    assert any("backup-2024-12-09T10-30-45.sql.partial" in r.getMessage() for r in caplog.records)


async def test_healthz_needs_no_auth(api: httpx.AsyncClient) -> None:
    response = await api.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


async def test_access_log_redacts_query_token(
    api: httpx.AsyncClient, auth: dict[str, str], token: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    name = (await _create(api, auth))["filename"]
    await api.get(f"/api/backup/download/{name}", params={"token": token})
    await api.get(f"/api/backup/download/{name}", params={"token": "garbage-token-value"})
    # httpx is this test's own client; every other logger is the server's.
    lines = [r.getMessage() for r in caplog.records if r.name != "httpx"]
    assert any(f"/api/backup/download/{name}?token=[REDACTED]" in line for line in lines)
    assert not any(token in line or "garbage-token-value" in line for line in lines)


async def test_openapi_declares_401_and_403(api: httpx.AsyncClient) -> None:
    spec = (await api.get("/openapi.json")).json()
    for path, methods in spec["paths"].items():
        if path.startswith("/api/backup"):
            for operation in methods.values():
                assert {"401", "403"} <= set(operation["responses"]), path


async def test_no_swagger_ui_from_a_cdn(api: httpx.AsyncClient) -> None:
    """/docs loaded Swagger UI from a CDN: blank offline, and no CSP could allow it."""
    for path in ("/docs", "/redoc", "/docs/oauth2-redirect"):
        assert (await api.get(path)).status_code == 404
    assert (await api.get("/openapi.json")).json()["info"]["title"] == "pgkeep"
