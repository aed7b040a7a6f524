"""The audit log: who, from where, what, the result; the chain catches edits and removals."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from pgkeep.cli import main
from pgkeep.storage.audit import AuditLog, verify

pytestmark = pytest.mark.anyio


async def test_audit_records_actions_and_pages(
    api: httpx.AsyncClient, auth: dict[str, str], backup_dir: Path, token: str
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
    page = (await api.get("/api/backup/audit?limit=3", headers=auth)).json()
    assert page["total"] == 8
    assert [e["action"] for e in page["entries"]] == ["delete", "delete", "unpin"]
    first, second = page["entries"][0], page["entries"][1]
    assert (first["who"], first["result"], first["status"]) == ("alice", "ok", 200)
    assert (second["who"], second["result"], second["status"]) == (None, "refused", 401)
    rest = (await api.get("/api/backup/audit?offset=3", headers=auth)).json()["entries"]
    assert [e["action"] for e in rest] == ["delete", "pin", "verify", "download", "create"]
    assert rest[0]["status"] == 409
    assert rest[3]["target"] == name
    assert rest[3]["source"] == "127.0.0.1"
    assert all(token not in json.dumps(e) for e in page["entries"] + rest)
    assert (await api.get("/api/backup/audit")).status_code == 401
    assert verify(backup_dir / "pgkeep-audit.jsonl") == (True, 8, "")  # reading it is not audited


def _log(tmp_path: Path, n: int = 5) -> Path:
    log = AuditLog(tmp_path / "audit.jsonl")
    for i in range(n):
        log.append(at=f"t{i}", who="alice", action="create", target=f"b{i}", result="ok")
    return log.path


def test_audit_chain_survives_reopening(tmp_path: Path) -> None:
    path = _log(tmp_path, 3)
    AuditLog(path).append(at="t3", who="bob", action="delete", target="b0", result="ok")
    assert verify(path) == (True, 4, "")


def test_audit_chain_detects_an_edited_line(tmp_path: Path) -> None:
    path = _log(tmp_path)
    lines = path.read_text().splitlines()
    entry = json.loads(lines[2])
    entry["who"] = "mallory"
    lines[2] = json.dumps(entry, sort_keys=True)
    path.write_text("\n".join(lines) + "\n")
    assert verify(path) == (False, 5, "line 3: content does not match its hash (edited)")


def test_audit_chain_detects_a_removed_line(tmp_path: Path) -> None:
    path = _log(tmp_path)
    lines = path.read_text().splitlines()
    del lines[1]
    path.write_text("\n".join(lines) + "\n")
    intact, count, problem = verify(path)
    assert (intact, count) == (False, 4)
    assert problem == "line 2: chain broken (a line removed or reordered)"


def test_audit_chain_detects_a_recomputed_forgery(tmp_path: Path) -> None:
    """Editing a line and fixing its own hash still breaks the next line's link."""
    from pgkeep.storage.audit import entry_hash

    path = _log(tmp_path)
    lines = path.read_text().splitlines()
    entry = json.loads(lines[1])
    entry["target"] = "something-else"
    entry["hash"] = entry_hash(entry)
    lines[1] = json.dumps(entry, sort_keys=True)
    path.write_text("\n".join(lines) + "\n")
    assert verify(path)[2] == "line 3: chain broken (a line removed or reordered)"


def test_cli_audit_verify(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _log(tmp_path)
    assert main(["audit", "verify", "--file", str(path)]) == 0
    assert capsys.readouterr().out.startswith("audit log intact: 5 entries")
    path.write_text(path.read_text().replace('"b3"', '"bX"'))
    assert main(["audit", "verify", "--file", str(path)]) == 6
    assert "BROKEN at line 4" in capsys.readouterr().out
