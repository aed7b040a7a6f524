"""Jobs over HTTP: async create, cancel mid-dump, 409 naming the running job, SSE, tickets,
and interrupted jobs after a restart."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from pgkeep.config import Settings
from pgkeep.core.jobs import Job, JobKind, JobStatus, Pool
from pgkeep.http.app import create_app
from pgkeep.local.board import LocalJobBoard
from pgkeep.local.state import StateFile, default_directory
from pgkeep.tickets import TicketIssuer
from tests.blocking import pg_dump_pids, table_locked, wait_for_pg_dump_waiting
from tests.conftest import backup_files

pytestmark = pytest.mark.anyio


async def _until_finished(api: httpx.AsyncClient, auth: dict[str, str], job_id: str) -> Any:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = (await api.get(f"/api/backup/jobs/{job_id}", headers=auth)).json()["job"]
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        await asyncio.sleep(0.05)
    raise AssertionError("job did not finish")


def parse_events(text: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((fields["event"], json.loads(fields["data"])))
    return events


async def test_async_create_answers_202_with_location(
    api: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    response = await api.post("/api/backup/create?async=true", headers=auth)
    assert response.status_code == 202
    job = response.json()["job"]
    assert response.headers["location"] == f"/api/backup/jobs/{job['id']}"
    assert set(job) >= {
        "id",
        "kind",
        "status",
        "filename",
        "startedAt",
        "finishedAt",
        "progress",
        "error",
    }
    assert set(job["progress"]) == {
        "bytesWritten",
        "tablesDone",
        "tablesTotal",
        "percent",
        "etaSeconds",
    }
    assert job["kind"] == "create"
    done = await _until_finished(api, auth, job["id"])
    assert done["status"] == "succeeded"
    assert done["filename"].endswith(".sql")
    assert done["progress"]["percent"] == 100.0
    assert done["progress"]["tablesDone"] == done["progress"]["tablesTotal"] == 3
    assert done["createdBy"] == "alice"
    listed = (await api.get("/api/backup/jobs", headers=auth)).json()
    assert listed["jobs"][0]["id"] == job["id"]
    backups = (await api.get("/api/backup/list", headers=auth)).json()["backups"]
    assert backups[0]["filename"] == done["filename"]


async def test_prefer_respond_async_header(api: httpx.AsyncClient, auth: dict[str, str]) -> None:
    response = await api.post("/api/backup/create", headers={**auth, "Prefer": "respond-async"})
    assert response.status_code == 202
    await _until_finished(api, auth, response.json()["job"]["id"])


async def test_cancel_mid_dump_leaves_nothing(
    api: httpx.AsyncClient, auth: dict[str, str], database: str, backup_dir: Path
) -> None:
    with table_locked(database):
        job = (await api.post("/api/backup/create?async=true", headers=auth)).json()["job"]
        await asyncio.to_thread(wait_for_pg_dump_waiting, database)
        assert any(n.endswith(".partial") for n in backup_files(backup_dir))
        assert pg_dump_pids(database)
        conflict = await api.post("/api/backup/create", headers=auth)
        assert conflict.status_code == 409
        assert job["id"] in conflict.json()["error"]
        cancelled = await api.delete(f"/api/backup/jobs/{job['id']}", headers=auth)
    assert cancelled.status_code == 200
    assert cancelled.json()["job"]["status"] == "cancelled"
    assert backup_files(backup_dir) == []
    assert pg_dump_pids(database) == []
    again = await api.delete(f"/api/backup/jobs/{job['id']}", headers=auth)
    assert again.status_code == 409
    assert (await api.get("/api/backup/jobs/nope", headers=auth)).status_code == 404


async def test_sync_create_is_still_synchronous(
    api: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    response = await api.post("/api/backup/create", headers=auth)
    assert response.status_code == 200
    assert response.json()["success"] is True
    jobs = (await api.get("/api/backup/jobs", headers=auth)).json()["jobs"]
    assert jobs[0]["status"] == "succeeded"


async def test_events_stream_ends_with_the_final_state(
    api: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    job = (await api.post("/api/backup/create?async=true", headers=auth)).json()["job"]
    response = await api.get(f"/api/backup/jobs/{job['id']}/events", headers=auth)
    assert response.headers["content-type"].startswith("text/event-stream")
    events = parse_events(response.text)
    assert events[-1][0] == "end"
    assert events[-1][1]["status"] == "succeeded"
    assert all(name == "progress" for name, _ in events[:-1])
    sizes = [data["progress"]["bytesWritten"] for _, data in events]
    assert sizes == sorted(sizes)
    unauth = await api.get(f"/api/backup/jobs/{job['id']}/events")
    assert unauth.status_code == 401


async def test_verify_and_restore_run_as_jobs(
    api: httpx.AsyncClient, auth: dict[str, str], cluster: Any
) -> None:
    name = (await api.post("/api/backup/create", headers=auth)).json()["filename"]
    verify = await api.post(f"/api/backup/{name}/verify?async=true", headers=auth)
    assert verify.status_code == 202
    done = await _until_finished(api, auth, verify.json()["job"]["id"])
    assert (done["kind"], done["status"], done["filename"]) == ("verify", "succeeded", name)
    restore = await api.post(
        f"/api/backup/{name}/restore?async=true",
        headers=auth,
        json={"targetDatabase": "job_copy"},
    )
    assert restore.status_code == 202
    try:
        done = await _until_finished(api, auth, restore.json()["job"]["id"])
        assert done["status"] == "succeeded"
    finally:
        cluster.execute("DROP DATABASE IF EXISTS job_copy WITH (FORCE)")
    missing = await api.post(
        "/api/backup/backup-2001-01-01T00-00-00.sql/verify?async=true", headers=auth
    )
    assert missing.status_code == 404  # refused before any job starts


async def test_download_ticket_single_use_bound_and_expiring(
    settings: Settings, auth: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    app = create_app(settings)
    now = [1_000_000.0]
    app.state.tickets = TicketIssuer(clock=lambda: now[0])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as api:
        first = (await api.post("/api/backup/create", headers=auth)).json()["filename"]
        other = (await api.post("/api/backup/create", headers=auth)).json()["filename"]
        link = await api.post(f"/api/backup/download-link/{first}", headers=auth)
        assert link.status_code == 200
        body = link.json()
        assert body["url"].startswith(f"/api/backup/download/{first}?target=db_")
        assert "&ticket=" in body["url"]
        assert body["expiresAt"] == "1970-01-12T13:47:40.000Z"
        ticket = body["url"].split("ticket=")[1]
        wrong_file = await api.get(f"/api/backup/download/{other}?ticket={ticket}")
        assert wrong_file.status_code == 401
        ok = await api.get(body["url"])
        assert ok.status_code == 200
        assert ok.content.startswith(b"--\n-- PostgreSQL database dump")
        reused = await api.get(body["url"])
        assert (reused.status_code, reused.json()["error"]) == (401, "used download ticket")
        late = (await api.post(f"/api/backup/download-link/{first}", headers=auth)).json()
        now[0] += 61
        expired = await api.get(late["url"])
        assert (expired.status_code, expired.json()["error"]) == (401, "expired download ticket")
        forged = await api.get(f"/api/backup/download/{first}?ticket={ticket[:-4]}AAAA")
        assert forged.status_code == 401
        no_auth = await api.post(f"/api/backup/download-link/{first}")
        assert no_auth.status_code == 401
    lines = [r.getMessage() for r in caplog.records if r.name != "httpx"]
    assert not any(ticket in line for line in lines)
    assert any("&ticket=[REDACTED]" in line for line in lines)


async def test_restart_marks_interrupted_jobs_failed(
    make_settings: Callable[..., Settings], auth: dict[str, str], backup_dir: Path
) -> None:
    """A job left running on the board by a process that is gone (killed) is failed at the
    next start, and its partial file removed."""
    backup_dir.mkdir()
    settings = make_settings()
    gone = subprocess.Popen(["true"])  # a process that ran here and is gone
    gone.wait()
    board = LocalJobBoard(
        StateFile(settings.state_dir or default_directory()),
        instance=f"{socket.gethostname()}:{gone.pid}:dead",
    )
    started = datetime(2024, 1, 1, tzinfo=UTC)
    job = Job("abc123", JobKind.CREATE, JobStatus.RUNNING, None, started, "bob", target="t")
    assert board.begin(job, Pool("dumps", 2), "create:t")
    board.save(replace(job, filename="backup-2024-01-01T00-00-00.sql"))
    (backup_dir / "backup-2024-01-01T00-00-00.sql.partial").write_text("half")
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://t") as api,
    ):
        found = (await api.get("/api/backup/jobs/abc123", headers=auth)).json()["job"]
    assert found["status"] == "failed"
    assert found["error"] == "interrupted by a restart of pgkeep"
    assert found["finishedAt"] is not None
    assert backup_files(backup_dir) == []
