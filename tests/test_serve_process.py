"""`pgkeep serve` as a real process over TCP: the wire, the access log, secrets kept out."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pgkeep.postgres.cluster import ThrowawayCluster, _free_port
from tests.conftest import SECRET


@pytest.fixture
def server(
    database: str, backup_dir: Path, cluster: ThrowawayCluster, tmp_path: Path
) -> Iterator[tuple[str, Path]]:
    port = _free_port()
    log = tmp_path / "server.log"
    env = {
        **os.environ,
        "PGKEEP_DATABASE_URL": database,
        "PGKEEP_JWT_SECRET": SECRET,
        "PGKEEP_BACKUP_DIR": str(backup_dir),
        "PGKEEP_PG_BIN_DIR": str(cluster.bin_dir),
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pgkeep", "serve", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise AssertionError(log.read_text())
        yield base, log
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_serve_process_round_trip_over_tcp(
    server: tuple[str, Path], cluster: ThrowawayCluster, backup_dir: Path
) -> None:
    base, log = server
    token = subprocess.run(
        [sys.executable, "-m", "pgkeep", "token", "--sub", "ci"],
        env={**os.environ, "PGKEEP_JWT_SECRET": SECRET},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    auth = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base, timeout=60) as client:
        created = client.post("/api/backup/create", headers=auth).json()
        name = created["filename"]
        listed = client.get("/api/backup/list", headers=auth).json()
        with client.stream("GET", f"/api/backup/download/{name}", params={"token": token}) as r:
            body = b"".join(r.iter_bytes())
            headers = r.headers
        missing = client.get("/api/backup/list")
        deleted = client.delete(f"/api/backup/{name}", headers=auth)
    assert listed["count"] == 1
    assert len(body) == created["sizeBytes"]
    assert body.startswith(b"--\n-- PostgreSQL database dump")
    assert headers["content-type"] == "application/sql"
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert deleted.status_code == 200
    text = log.read_text()
    assert f'"GET /api/backup/download/{name}?token=[REDACTED]" 200' in text
    assert "backup finished target=" in text
    assert token not in text
    assert cluster.password not in text
    assert "server: uvicorn" not in str(headers).lower()
