"""The audit trail over HTTP and from every entry point: nothing performed goes unrecorded."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from pgkeep import scheduling, wiring
from pgkeep.cli import main
from pgkeep.config import Settings
from pgkeep.core.audit import verify
from pgkeep.core.jobs import JobKind
from tests.conftest import backup_files

pytestmark = pytest.mark.anyio


def _entries(backup_dir: Path) -> list[dict[str, object]]:
    path = backup_dir / "pgkeep-audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_audit_records_actions_and_pages(
    api: httpx.AsyncClient, auth: dict[str, str], settings: Settings, token: str
) -> None:
    name = (await api.post("/api/backup/create", headers=auth)).json()["filename"]
    await api.get(f"/api/backup/download/{name}", params={"token": token})
    await api.post(f"/api/backup/{name}/verify", headers=auth)
    await api.post(f"/api/backup/{name}/pin", headers=auth)
    await api.delete(f"/api/backup/{name}", headers=auth)  # refused: pinned
    await api.delete(f"/api/backup/{name}/pin", headers=auth)
    await api.delete(f"/api/backup/{name}")  # no token
    await api.delete(f"/api/backup/{name}", headers=auth)
    await api.get("/api/backup/list", headers=auth)  # reads are not audited, downloads are
    page = (await api.get("/api/backup/audit?limit=4", headers=auth)).json()
    assert page["total"] == 15  # what the core ran: started, then how it ended
    assert [(e["action"], e["result"]) for e in page["entries"]] == [
        ("delete", "succeeded"),
        ("delete", "started"),
        ("delete", "refused"),  # no token: recorded at the edge, never started
        ("unpin", "succeeded"),
    ]
    first, started, refused = page["entries"][:3]
    assert (first["who"], first["via"]) == ("alice", "api")
    assert (started["who"], started["backup"]) == ("alice", name)
    assert (refused["who"], refused["status"]) == (None, 401)
    rest = (await api.get("/api/backup/audit?offset=4", headers=auth)).json()["entries"]
    assert [(e["action"], e["result"]) for e in rest] == [
        ("unpin", "started"),
        ("delete", "refused"),
        ("delete", "started"),
        ("pin", "succeeded"),
        ("pin", "started"),
        ("verify", "succeeded"),
        ("verify", "started"),
        ("download", "succeeded"),
        ("download", "started"),
        ("create", "succeeded"),
        ("create", "started"),
    ]
    assert "pinned" in rest[1]["error"]
    assert rest[7]["backup"] == name
    assert rest[7]["source"] == "127.0.0.1"
    assert all(token not in json.dumps(e) for e in page["entries"] + rest)
    assert (await api.get("/api/backup/audit")).status_code == 401
    runtime = wiring.build(settings)  # reading it is not audited
    report = verify(runtime.audit, runtime.audit.signer, runtime.audit.anchor)
    assert (report.intact, report.entries) == (True, 15)


@pytest.mark.parametrize("suffix", ["%0A", "%0D%0A", "%00", "%09", "%7F"])
async def test_paths_with_control_characters_are_refused_before_routing(
    api: httpx.AsyncClient, auth: dict[str, str], backup_dir: Path, suffix: str
) -> None:
    """The router's `$` matched before a trailing newline: `DELETE …/NAME%0A` deleted NAME
    with no audit line. Such paths now never reach a route."""
    name = (await api.post("/api/backup/create", headers=auth)).json()["filename"]
    before = len(_entries(backup_dir))
    for method, path in [
        ("DELETE", f"/api/backup/{name}{suffix}"),
        ("GET", f"/api/backup/download/{name}{suffix}"),
        ("POST", f"/api/backup/{name}{suffix}/pin"),
        ("POST", f"/api/backup/{name}/pin{suffix}"),
    ]:
        response = await api.request(method, path, headers=auth)
        assert response.status_code == 400, (method, path)
        assert response.json()["error"] == "Invalid request path"
    assert len(_entries(backup_dir)) == before  # nothing performed, so nothing to record
    assert name in backup_files(backup_dir)
    listed = (await api.get("/api/backup/list", headers=auth)).json()["backups"]
    assert not any(b.get("pinned") for b in listed)


@pytest.mark.parametrize("suffix", ["/", "%2F", "%20", "%252F", "%5C"])
async def test_audit_records_every_dispatched_request_whatever_its_path(
    api: httpx.AsyncClient, auth: dict[str, str], backup_dir: Path, suffix: str
) -> None:
    name = (await api.post("/api/backup/create", headers=auth)).json()["filename"]
    before = len(_entries(backup_dir))
    for method, path in [
        ("DELETE", f"/api/backup/{name}{suffix}"),
        ("GET", f"/api/backup/download/{name}{suffix}"),
        ("POST", f"/api/backup/{name}{suffix}/pin"),
    ]:
        response = await api.request(method, path, headers=auth)
        added = _entries(backup_dir)[before:]
        before += len(added)
        if response.status_code != 404 or "Not found" not in response.text:
            assert added, f"{method} {path} -> {response.status_code} left no audit line"
    assert name in backup_files(backup_dir)


async def test_audit_records_cli_scheduler_and_retention(
    make_settings: Callable[..., Settings],
    backup_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = make_settings(retention_days=1, retention_min_keep=0)
    for name, value in {
        "PGKEEP_DATABASE_URL": settings.require_database_url(),
        "PGKEEP_JWT_SECRET": settings.require_signing_secret(),
        "PGKEEP_BACKUP_DIR": str(backup_dir),
        "PGKEEP_PG_BIN_DIR": str(settings.pg_bin_dir),
    }.items():
        monkeypatch.setenv(name, value)
    assert main(["backup", "create"]) == 0
    created = capsys.readouterr().out.split("\t")[0]
    later = datetime.now(UTC) + timedelta(days=3)
    runtime = wiring.build(settings, clock=lambda: later)
    scheduling.run_target(runtime.service(), JobKind.CREATE)  # a scheduled run, three days on
    entries = _entries(backup_dir)
    assert [(e["action"], e["via"], e["result"]) for e in entries] == [
        ("create", "cli", "started"),
        ("create", "cli", "succeeded"),
        ("create", "scheduler", "started"),
        ("create", "scheduler", "succeeded"),
        ("delete", "retention", "started"),  # the CLI's backup, three days old by then
        ("delete", "retention", "succeeded"),
    ]
    assert str(entries[0]["who"]).startswith("cli:")
    assert entries[4]["backup"] == entries[5]["backup"] == created
    assert main(["audit", "verify"]) == 0
    assert "audit log intact: 6 entries" in capsys.readouterr().out


def test_cli_audit_verify_names_the_broken_entry(
    make_settings: Callable[..., Settings],
    backup_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = make_settings()
    runtime = wiring.build(settings)
    for i in range(4):
        runtime.audit.append(who="alice", action="create", backup=f"b{i}", result="succeeded")
    monkeypatch.setenv("PGKEEP_DATABASE_URL", settings.require_database_url())
    monkeypatch.setenv("PGKEEP_JWT_SECRET", settings.require_signing_secret())
    monkeypatch.setenv("PGKEEP_BACKUP_DIR", str(backup_dir))
    assert main(["audit", "verify"]) == 0
    assert capsys.readouterr().out.startswith("audit log intact: 4 entries")
    path = backup_dir / "pgkeep-audit.jsonl"
    path.write_text(path.read_text().replace('"b2"', '"bX"'))
    assert main(["audit", "verify"]) == 6
    assert "BROKEN at seq 3" in capsys.readouterr().out
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:2]) + "\n")  # the tampered tail cut off
    assert main(["audit", "verify"]) == 6
    assert "lines were cut off the end" in capsys.readouterr().out
